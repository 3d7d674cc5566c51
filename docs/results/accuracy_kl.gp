set terminal pngcairo size 900,600
set output 'accuracy_kl.png'
set title "KL(exact || HyperAttention), bundled model, Emma 8192 tokens, all 6 layers"
set xlabel "keys per query (block + samples; mean over layers)"
set ylabel "mean KL per token (nats)"
set logscale xy
set xrange [48:340]
set yrange [0.005:0.3]
set xtics (64, 128, 256)
set grid
set key top right font ",9"
plot 'accuracy_kl.dat' using 1:2 with linespoints lw 2 title "paper (block K/2, uniform samples K/2)", \
     '' using 1:3 with linespoints lw 2 title "stratified (block K/8, stratified samples 7K/8)", \
     '' using 1:4 with linespoints lw 2 title "stratified-window (+ local window K/4)", \
     '' using 1:5 with linespoints lw 2 title "stratified + per-layer budgets (--layer-keys auto)", \
     '' using 1:6 with linespoints lw 2 title "stratified-window + per-layer budgets"
