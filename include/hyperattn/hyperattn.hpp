// hyperattn/hyperattn.hpp: the whole public API.
#pragma once

#include "hyperattn/attention.hpp"
#include "hyperattn/config.hpp"
#include "hyperattn/status.hpp"
#include "hyperattn/tensor.hpp"
#include "hyperattn/version.hpp"
