#include "reference/reference.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <optional>

#include "core/bfloat16.hpp"
#include "core/lsh.hpp"
#include "core/random.hpp"

namespace hyperattn::reference {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

struct Heads {
  std::vector<double> q, k, v;  // [batch, heads, seq, d]
  std::int64_t hq, hkv, nq, nk;
  int d;
  const double* qrow(std::int64_t b, std::int64_t h, std::int64_t i) const { return q.data() + ((b * hq + h) * nq + i) * d; }
  const double* krow(std::int64_t b, std::int64_t h, std::int64_t j) const { return k.data() + ((b * hkv + h) * nk + j) * d; }
  const double* vrow(std::int64_t b, std::int64_t h, std::int64_t j) const { return v.data() + ((b * hkv + h) * nk + j) * d; }
};

Heads load(const AttentionArgs& a) {
  return {to_double(a.q), to_double(a.k), to_double(a.v), a.q.heads(), a.k.heads(), a.q.seq(), a.k.seq(),
          static_cast<int>(a.q.head_dim())};
}

double resolve_scale(const AttentionConfig& c, int d) {
  return c.scale > 0.0f ? static_cast<double>(c.scale) : 1.0 / std::sqrt(static_cast<double>(d));
}

// Result rows of one (batch, query head): out [nq, d], lse [nq].
struct Rows {
  std::vector<double> out, lse;
};

// Exact attention of query rows [q0, q1) over keys [k0, k1); row q0+r sees key k0+c iff
// c <= r + diag (diag = huge: no mask).
// With `sets` (the key sets of this head's rows, indexed by absolute row), each row's keys are
// appended to its set.
Rows exact_rows(const Heads& H, std::int64_t b, std::int64_t h, std::int64_t q0, std::int64_t q1, std::int64_t k0,
                std::int64_t k1, std::int64_t diag, double scale, std::vector<KeyEntry>* sets = nullptr) {
  const std::int64_t hkv = h / (H.hq / H.hkv);
  Rows r{std::vector<double>(static_cast<std::size_t>((q1 - q0) * H.d)), std::vector<double>(static_cast<std::size_t>(q1 - q0))};
  std::vector<const double*> ks, vs;
  std::vector<double> bias;
  for (std::int64_t i = q0; i < q1; ++i) {
    ks.clear(), vs.clear(), bias.clear();
    for (std::int64_t j = k0; j < k1; ++j) {
      if (j - k0 > (i - q0) + diag) break;
      ks.push_back(H.krow(b, hkv, j));
      vs.push_back(H.vrow(b, hkv, j));
      bias.push_back(0.0);
      if (sets != nullptr) sets[i].push_back({j, 0.0});
    }
    attend_row(H.qrow(b, h, i), ks, vs, bias, H.d, scale, &r.out[static_cast<std::size_t>((i - q0) * H.d)], &r.lse[static_cast<std::size_t>(i - q0)]);
  }
  return r;
}

void merge_into(Rows& acc, std::int64_t offset, const Rows& part, int d) {
  for (std::size_t i = 0; i < part.lse.size(); ++i) {
    double& l1 = acc.lse[offset + i];
    const double l2 = part.lse[i];
    if (l2 == kNegInf) continue;
    const double l = l1 == kNegInf ? l2 : std::max(l1, l2) + std::log1p(std::exp(-std::abs(l1 - l2)));
    const double w1 = l1 == kNegInf ? 0.0 : std::exp(l1 - l), w2 = std::exp(l2 - l);
    for (int c = 0; c < d; ++c) {
      double& o = acc.out[(offset + i) * d + c];
      o = w1 * o + w2 * part.out[i * d + c];
    }
    l1 = l;
  }
}

// The hyperplanes [batch, heads_kv, d, lsh_bits]: injected, or drawn from the seed's stream.
std::vector<float> draw_projections(const AttentionArgs& args, const AttentionConfig& c, const InjectedRandomness& inj) {
  const std::int64_t batch = args.q.batch(), hkv = args.k.heads(), d = args.q.head_dim();
  std::vector<float> g(static_cast<std::size_t>(batch * hkv * d * c.lsh_bits));
  for (std::size_t i = 0; i < g.size(); ++i) {
    if (inj.projections != nullptr) {
      g[i] = inj.projections[i];
      continue;
    }
    const std::int64_t t = static_cast<std::int64_t>(i) % c.lsh_bits, rest = static_cast<std::int64_t>(i) / c.lsh_bits;
    const std::int64_t dim = rest % d, bh = rest / d;
    g[i] = static_cast<float>(rng::projection_normal(c.seed, bh / hkv, bh % hkv, static_cast<int>(dim), static_cast<int>(t)));
  }
  return g;
}

struct Hyper {
  const Heads& H;
  const AttentionConfig& c;
  const InjectedRandomness& inj;
  std::vector<float> proj;
  double scale;
  std::vector<KeyEntry>* sets = nullptr;  // the current head's row key sets (optional)

  void record(std::int64_t row, const std::vector<std::int64_t>& keys, const std::vector<double>& bias) const {
    if (sets == nullptr) return;
    for (std::size_t j = 0; j < keys.size(); ++j) sets[row].push_back({keys[j], bias[j]});
  }

  std::uint32_t bucket(const double* x, std::int64_t b, std::int64_t hkv) const {
    // The sign bits from the double copy of the (fp32 or bf16) input: exact conversions, so the
    // same bits as the fast path.
    std::vector<float> xf(static_cast<std::size_t>(H.d));
    for (int i = 0; i < H.d; ++i) xf[static_cast<std::size_t>(i)] = static_cast<float>(x[i]);
    const float* g = proj.data() + (b * H.hkv + hkv) * H.d * c.lsh_bits;
    return lsh::bucket_of(lsh::sign_bits_f32(xf.data(), g, H.d, c.lsh_bits), c.bucket_order);
  }

  // Positions [lo, hi) sorted by bucket, ties by position.
  template <typename Row>
  std::vector<std::int64_t> sorted(std::int64_t lo, std::int64_t hi, std::int64_t b, std::int64_t hkv, Row row) const {
    std::vector<std::int64_t> idx(static_cast<std::size_t>(hi - lo));
    std::iota(idx.begin(), idx.end(), lo);
    std::vector<std::uint32_t> key(idx.size());
    for (std::size_t i = 0; i < idx.size(); ++i) key[i] = bucket(row(idx[i]), b, hkv);
    std::vector<std::size_t> order(idx.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](std::size_t x, std::size_t y) { return key[x] < key[y]; });
    std::vector<std::int64_t> out(idx.size());
    for (std::size_t i = 0; i < idx.size(); ++i) out[i] = idx[order[i]];
    return out;
  }

  // Non-causal sub-problem: queries [q0,q1) x keys [k0,k1), specification §2.
  // A causal plan's off-diagonal sub-problems pass `delta`: query i sits at key position i + delta,
  // so its local window (config.local_window) is keys [i + delta - window, i + delta).
  Rows noncausal(std::int64_t b, std::int64_t h, std::int64_t q0, std::int64_t q1, std::int64_t k0, std::int64_t k1,
                 std::uint64_t subproblem, std::optional<std::int64_t> delta = std::nullopt) const {
    const std::int64_t nq = q1 - q0;
    // The decision rules re-derived from the specification (§2; sinks: AttentionConfig::sink_keys), not
    // taken from the code under test: the sinks are the keys of [k0, k1) among the first sink_keys of
    // the sequence; a sub-problem is approximated when it has at least min_seq_len queries and its
    // block plus samples (or sinks, which replace samples) leave keys out.
    const std::int64_t sinks = std::max<std::int64_t>(0, std::min(c.sink_keys, k1) - k0);
    const bool approximate = nq >= c.min_seq_len && c.block_size + std::max(c.sample_size, sinks) < k1 - k0;
    if (!approximate) return exact_rows(H, b, h, q0, q1, k0, k1, std::numeric_limits<std::int64_t>::max() / 4, scale, sets);
    const std::int64_t hkv = h / (H.hq / H.hkv);
    const auto qs = sorted(q0, q1, b, hkv, [&](std::int64_t i) { return H.qrow(b, h, i); });
    const auto ks = sorted(k0 + sinks, k1, b, hkv, [&](std::int64_t j) { return H.krow(b, hkv, j); });
    const std::int64_t nk = k1 - k0 - sinks;
    const std::int64_t blocks = (nk + c.block_size - 1) / c.block_size;
    Rows r{std::vector<double>(static_cast<std::size_t>(nq * H.d)), std::vector<double>(static_cast<std::size_t>(nq))};
    for (std::int64_t beta = 0; beta < blocks; ++beta) {
      const std::int64_t start = beta * c.block_size, blk = std::min(nk, start + c.block_size) - start;
      const std::int64_t outside = nk - blk;
      const std::int64_t budget = std::max<std::int64_t>(c.sample_size - sinks, 0);  // sinks use up samples
      const std::int64_t m = c.sampling == Sampling::stratified ? std::min(budget, outside) : (outside > 0 ? budget : 0);
      std::vector<const double*> kr, vr;
      std::vector<double> bias;
      std::vector<std::int64_t> sample_keys;  // [m]
      std::vector<std::int64_t> key_ids;      // [sinks + blk + m]
      for (std::int64_t j = k0; j < k0 + sinks; ++j) {
        kr.push_back(H.krow(b, hkv, j));
        vr.push_back(H.vrow(b, hkv, j));
        bias.push_back(0.0);
        key_ids.push_back(j);
      }
      for (std::int64_t i = 0; i < blk; ++i) {
        kr.push_back(H.krow(b, hkv, ks[start + i]));
        vr.push_back(H.vrow(b, hkv, ks[start + i]));
        bias.push_back(0.0);
        key_ids.push_back(ks[start + i]);
      }
      for (std::int64_t i = 0; i < m; ++i) {
        std::int64_t key;
        double weight = static_cast<double>(outside) / static_cast<double>(m);
        if (inj.samples != nullptr && subproblem == 0) {
          key = inj.samples[((b * H.hq + h) * blocks + beta) * c.sample_size + i];
        } else if (c.sampling == Sampling::stratified) {
          const std::int64_t lo = i * outside / m, size = (i + 1) * outside / m - lo;
          const std::int64_t u = lo + static_cast<std::int64_t>(rng::uniform_below(rng::bits(c.seed, rng::Stream::sample, b, h, subproblem, beta, i), size));
          key = ks[u < start ? u : u + blk];
          weight = static_cast<double>(size);
        } else {
          const std::int64_t u = static_cast<std::int64_t>(rng::uniform_below(
              rng::bits(c.seed, rng::Stream::sample, b, h, subproblem, beta, i), outside));
          key = ks[u < start ? u : u + blk];
        }
        kr.push_back(H.krow(b, hkv, key));
        vr.push_back(H.vrow(b, hkv, key));
        bias.push_back(std::log(weight));
        sample_keys.push_back(key);
        key_ids.push_back(key);
      }
      for (std::int64_t s = beta * nq / blocks; s < (beta + 1) * nq / blocks; ++s) {
        const std::int64_t i = qs[s];
        if (delta && c.causal && c.local_window > 0) {
          // The window's keys exactly; the block's and the samples' keys inside it count zero.
          const std::int64_t w0 = std::max(k0 + sinks, i + *delta - c.local_window), w1 = std::min(k1, i + *delta);
          if (w0 < w1) {
            std::vector<const double*> wk = kr, wv = vr;
            std::vector<double> wb = bias;
            const std::size_t fixed = static_cast<std::size_t>(sinks);
            for (std::size_t j = fixed; j < wk.size(); ++j) {
              const std::int64_t key = j < fixed + static_cast<std::size_t>(blk) ? ks[start + static_cast<std::int64_t>(j - fixed)]
                                                                                  : sample_keys[j - fixed - static_cast<std::size_t>(blk)];
              if (key >= w0 && key < w1) wb[j] = kNegInf;
            }
            std::vector<std::int64_t> wid = key_ids;
            for (std::int64_t key = w0; key < w1; ++key) {
              wk.push_back(H.krow(b, hkv, key));
              wv.push_back(H.vrow(b, hkv, key));
              wb.push_back(0.0);
              wid.push_back(key);
            }
            record(i, wid, wb);
            attend_row(H.qrow(b, h, i), wk, wv, wb, H.d, scale, &r.out[(i - q0) * H.d], &r.lse[i - q0]);
            continue;
          }
        }
        record(i, key_ids, bias);
        attend_row(H.qrow(b, h, i), kr, vr, bias, H.d, scale, &r.out[(i - q0) * H.d], &r.lse[i - q0]);
      }
    }
    return r;
  }

  // Causal rows [s, t) (query e+i pairs with key p+i): the recursion over halves, §3.
  Rows causal(std::int64_t b, std::int64_t h, std::int64_t s, std::int64_t t, std::int64_t e, std::int64_t p) const {
    if (t - s <= std::max<std::int64_t>(c.min_seq_len, 1)) return exact_rows(H, b, h, e + s, e + t, p + s, p + t, 0, scale, sets);
    const std::int64_t mid = s + (t - s + 1) / 2;
    Rows top = causal(b, h, s, mid, e, p);
    Rows bottom = causal(b, h, mid, t, e, p);
    merge_into(bottom, 0, noncausal(b, h, e + mid, e + t, p + s, p + mid, rng::subproblem_id(e + mid, p + s), p - e), H.d);
    top.out.insert(top.out.end(), bottom.out.begin(), bottom.out.end());
    top.lse.insert(top.lse.end(), bottom.lse.begin(), bottom.lse.end());
    return top;
  }
};

}  // namespace

void attend_row(const double* q, const std::vector<const double*>& k_rows, const std::vector<const double*>& v_rows,
                const std::vector<double>& bias, int d, double scale, double* out, double* lse) {
  std::fill(out, out + d, 0.0);
  if (k_rows.empty()) {
    *lse = kNegInf;
    return;
  }
  std::vector<double> s(k_rows.size());
  double mx = kNegInf;
  for (std::size_t j = 0; j < k_rows.size(); ++j) {
    double dot = 0.0;
    for (int c = 0; c < d; ++c) dot += q[c] * k_rows[j][c];
    s[j] = scale * dot + bias[j];
    mx = std::max(mx, s[j]);
  }
  double sum = 0.0;
  for (std::size_t j = 0; j < k_rows.size(); ++j) {
    const double w = std::exp(s[j] - mx);
    sum += w;
    for (int c = 0; c < d; ++c) out[c] += w * v_rows[j][c];
  }
  for (int c = 0; c < d; ++c) out[c] /= sum;
  *lse = mx + std::log(sum);
}

std::vector<double> to_double(const TensorView& t) {
  std::vector<double> r(static_cast<std::size_t>(t.numel()));
  std::size_t o = 0;
  for (std::int64_t b = 0; b < t.shape[0]; ++b)
    for (std::int64_t h = 0; h < t.shape[1]; ++h)
      for (std::int64_t i = 0; i < t.shape[2]; ++i)
        for (std::int64_t c = 0; c < t.shape[3]; ++c) {
          const std::int64_t off = b * t.stride[0] + h * t.stride[1] + i * t.stride[2] + c;
          r[o++] = t.dtype == DType::f32 ? static_cast<const float*>(t.data)[off]
                                         : bf16_bits_to_f32(static_cast<const std::uint16_t*>(t.data)[off]);
        }
  return r;
}

Status exact_attention(const AttentionArgs& args, const AttentionConfig& config, Output* result) {
  HYPERATTN_RETURN_IF_ERROR(validate(args, config));
  const Heads H = load(args);
  const double scale = resolve_scale(config, H.d);
  const std::int64_t batch = args.q.batch();
  result->out.assign(static_cast<std::size_t>(batch * H.hq * H.nq * H.d), 0.0);
  result->lse.assign(static_cast<std::size_t>(batch * H.hq * H.nq), 0.0);
  const std::int64_t diag = config.causal ? H.nk - H.nq : std::numeric_limits<std::int64_t>::max() / 4;
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t h = 0; h < H.hq; ++h) {
      Rows r = exact_rows(H, b, h, 0, H.nq, 0, H.nk, diag, scale);
      std::copy(r.out.begin(), r.out.end(), result->out.begin() + (b * H.hq + h) * H.nq * H.d);
      std::copy(r.lse.begin(), r.lse.end(), result->lse.begin() + (b * H.hq + h) * H.nq);
    }
  return Status::Ok();
}

Status hyper_attention(const AttentionArgs& args, const AttentionConfig& config, const InjectedRandomness& injected,
                       Output* result) {
  HYPERATTN_RETURN_IF_ERROR(validate(args, config));
  if (config.sampling != Sampling::uniform && config.sampling != Sampling::stratified)
    return Status::Unsupported("reference::hyper_attention: uniform or stratified sampling only");
  const Heads H = load(args);
  Hyper hy{H, config, injected, draw_projections(args, config, injected), resolve_scale(config, H.d)};
  const std::int64_t batch = args.q.batch();
  result->out.assign(static_cast<std::size_t>(batch * H.hq * H.nq * H.d), 0.0);
  result->lse.assign(static_cast<std::size_t>(batch * H.hq * H.nq), kNegInf);
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t h = 0; h < H.hq; ++h) {
      const std::size_t o = static_cast<std::size_t>((b * H.hq + h) * H.nq);
      if (!config.causal) {
        Rows r = hy.noncausal(b, h, 0, H.nq, 0, H.nk, 0);
        std::copy(r.out.begin(), r.out.end(), result->out.begin() + o * H.d);
        std::copy(r.lse.begin(), r.lse.end(), result->lse.begin() + o);
        continue;
      }
      const std::int64_t e = std::max<std::int64_t>(0, H.nq - H.nk), rows = H.nq - e, p = H.nk - rows;
      Rows r = hy.causal(b, h, 0, rows, e, p);
      if (p > 0) merge_into(r, 0, hy.noncausal(b, h, e, H.nq, 0, p, rng::visible_prefix_id(e), p - e), H.d);
      std::copy(r.out.begin(), r.out.end(), result->out.begin() + (o + e) * H.d);
      std::copy(r.lse.begin(), r.lse.end(), result->lse.begin() + o + e);
    }
  return Status::Ok();
}

DoubleProblem to_problem(const AttentionArgs& args, const AttentionConfig& config) {
  DoubleProblem p;
  p.q = to_double(args.q);
  p.k = to_double(args.k);
  p.v = to_double(args.v);
  p.batch = args.q.batch();
  p.heads_q = args.q.heads();
  p.heads_kv = args.k.heads();
  p.seq_q = args.q.seq();
  p.seq_kv = args.k.seq();
  p.d = static_cast<int>(args.q.head_dim());
  p.scale = resolve_scale(config, p.d);
  return p;
}

Status exact_key_sets(const AttentionArgs& args, const AttentionConfig& config, KeySets* sets) {
  HYPERATTN_RETURN_IF_ERROR(validate(args, config));
  const std::int64_t nq = args.q.seq(), nk = args.k.seq();
  sets->assign(static_cast<std::size_t>(args.q.batch() * args.q.heads() * nq), {});
  for (std::size_t r = 0; r < sets->size(); ++r) {
    const std::int64_t i = static_cast<std::int64_t>(r) % nq;
    const std::int64_t last = config.causal ? std::min(nk - 1, i + nk - nq) : nk - 1;  // bottom-right aligned
    for (std::int64_t j = 0; j <= last; ++j) (*sets)[r].push_back({j, 0.0});
  }
  return Status::Ok();
}

Status hyper_key_sets(const AttentionArgs& args, const AttentionConfig& config, const InjectedRandomness& injected,
                      KeySets* sets) {
  HYPERATTN_RETURN_IF_ERROR(validate(args, config));
  if (config.sampling != Sampling::uniform && config.sampling != Sampling::stratified)
    return Status::Unsupported("reference::hyper_key_sets: uniform or stratified sampling only");
  const Heads H = load(args);
  Hyper hy{H, config, injected, draw_projections(args, config, injected), resolve_scale(config, H.d)};
  sets->assign(static_cast<std::size_t>(args.q.batch() * H.hq * H.nq), {});
  for (std::int64_t b = 0; b < args.q.batch(); ++b)
    for (std::int64_t h = 0; h < H.hq; ++h) {
      hy.sets = sets->data() + (b * H.hq + h) * H.nq;
      if (!config.causal) {
        (void)hy.noncausal(b, h, 0, H.nq, 0, H.nk, 0);
        continue;
      }
      const std::int64_t e = std::max<std::int64_t>(0, H.nq - H.nk), rows = H.nq - e, p = H.nk - rows;
      (void)hy.causal(b, h, 0, rows, e, p);
      if (p > 0) (void)hy.noncausal(b, h, e, H.nq, 0, p, rng::visible_prefix_id(e), p - e);
    }
  return Status::Ok();
}

namespace {

// Row r (of [batch, heads_q, seq_q]) of p: its query, and its key-value head's K and V.
struct RowView {
  const double* q;
  const double* k;  // [seq_kv, d]
  const double* v;
  std::int64_t b, h, hkv;
};
RowView row_view(const DoubleProblem& p, std::size_t r) {
  const std::int64_t bh = static_cast<std::int64_t>(r) / p.seq_q;
  const std::int64_t b = bh / p.heads_q, h = bh % p.heads_q, hkv = h / (p.heads_q / p.heads_kv);
  return {p.q.data() + static_cast<std::int64_t>(r) * p.d, p.k.data() + (b * p.heads_kv + hkv) * p.seq_kv * p.d,
          p.v.data() + (b * p.heads_kv + hkv) * p.seq_kv * p.d, b, h, hkv};
}

// The weights P_j = e^{s_j - lse} of one row over its set, and its lse (-inf for an empty set).
double row_weights(const DoubleProblem& p, const RowView& rv, const std::vector<KeyEntry>& set, std::vector<double>& w) {
  w.resize(set.size());
  double mx = kNegInf;
  bool nan = false;  // std::max drops NaN: a NaN score makes the row NaN (docs/numerics.md), never "no key"
  for (std::size_t j = 0; j < set.size(); ++j) {
    double dot = 0.0;
    const double* k = rv.k + set[j].key * p.d;
    for (int c = 0; c < p.d; ++c) dot += rv.q[c] * k[c];
    w[j] = p.scale * dot + set[j].bias;
    mx = std::max(mx, w[j]);
    nan |= std::isnan(w[j]);
  }
  if (nan) mx = std::numeric_limits<double>::quiet_NaN();
  if (mx == kNegInf) {
    std::fill(w.begin(), w.end(), 0.0);
    return kNegInf;
  }
  double sum = 0.0;
  for (double& x : w) sum += (x = std::exp(x - mx));
  for (double& x : w) x /= sum;
  return mx + std::log(sum);
}

}  // namespace

Output attend_sets(const DoubleProblem& p, const KeySets& sets) {
  Output o{std::vector<double>(sets.size() * static_cast<std::size_t>(p.d), 0.0), std::vector<double>(sets.size(), kNegInf)};
  std::vector<double> w;
  for (std::size_t r = 0; r < sets.size(); ++r) {
    const RowView rv = row_view(p, r);
    o.lse[r] = row_weights(p, rv, sets[r], w);
    for (std::size_t j = 0; j < sets[r].size(); ++j)
      for (int c = 0; c < p.d; ++c) o.out[r * p.d + c] += w[j] * rv.v[sets[r][j].key * p.d + c];
  }
  return o;
}

Gradients backward_sets(const DoubleProblem& p, const KeySets& sets, const std::vector<double>& d_out,
                        const std::vector<double>& d_lse) {
  Gradients g{std::vector<double>(p.q.size(), 0.0), std::vector<double>(p.k.size(), 0.0), std::vector<double>(p.v.size(), 0.0)};
  const Output o = attend_sets(p, sets);
  std::vector<double> w;
  for (std::size_t r = 0; r < sets.size(); ++r) {
    const RowView rv = row_view(p, r);
    if (row_weights(p, rv, sets[r], w) == kNegInf) continue;
    const double* go = d_out.data() + r * p.d;
    double delta = d_lse.empty() ? 0.0 : -d_lse[r];
    for (int c = 0; c < p.d; ++c) delta += go[c] * o.out[r * p.d + c];
    const std::int64_t kv = (rv.b * p.heads_kv + rv.hkv) * p.seq_kv;
    for (std::size_t j = 0; j < sets[r].size(); ++j) {
      const std::int64_t key = sets[r][j].key;
      const double* v = rv.v + key * p.d;
      const double* k = rv.k + key * p.d;
      double dp = 0.0;
      for (int c = 0; c < p.d; ++c) dp += go[c] * v[c];
      const double ds = w[j] * (dp - delta);
      for (int c = 0; c < p.d; ++c) {
        g.dq[r * p.d + c] += p.scale * ds * k[c];
        g.dk[(kv + key) * p.d + c] += p.scale * ds * rv.q[c];
        g.dv[(kv + key) * p.d + c] += w[j] * go[c];
      }
    }
  }
  return g;
}

double loss_sets(const DoubleProblem& p, const KeySets& sets, const std::vector<double>& d_out,
                 const std::vector<double>& d_lse) {
  const Output o = attend_sets(p, sets);
  double l = 0.0;
  for (std::size_t i = 0; i < o.out.size(); ++i) l += d_out[i] * o.out[i];
  if (!d_lse.empty())
    for (std::size_t r = 0; r < o.lse.size(); ++r)
      if (o.lse[r] != kNegInf) l += d_lse[r] * o.lse[r];
  return l;
}

}  // namespace hyperattn::reference
