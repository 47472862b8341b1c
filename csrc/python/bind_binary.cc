#include <pybind11/stl.h>

#include <climits>

#include "kernels/bconv2d.h"
#include "kernels/blinear.h"
#include "python/common.h"
#include "runtime/dispatch.h"

namespace xnor::py_bind {
namespace {

PadMode parse_pad_mode(const std::string& s) {
  if (s == "zero") return PadMode::kZero;
  if (s == "plus_one") return PadMode::kPlusOne;
  if (s == "minus_one") return PadMode::kMinusOne;
  throw std::invalid_argument("pad_mode must be 'zero', 'plus_one' or 'minus_one', got '" + s + "'");
}

OutputKind parse_output(const std::string& s) {
  if (s == "int32") return OutputKind::kInt32;
  if (s == "float") return OutputKind::kFloat;
  if (s == "bits") return OutputKind::kBits;
  throw std::invalid_argument("output must be 'int32', 'float' or 'bits', got '" + s + "'");
}

template <typename T>
std::vector<T> to_vector(const std::optional<CArray<T>>& a, int n, const char* name) {
  if (!a) throw std::invalid_argument(std::string(name) + " is required for this output kind");
  if (a->ndim() != 1 || a->shape(0) != n) {
    throw std::invalid_argument(std::string(name) + " must have shape (" + std::to_string(n) + ",), got " +
                                shape_str(*a));
  }
  return std::vector<T>(a->data(), a->data() + n);
}

OutputTransform make_transform(const std::string& output, int out_channels,
                               const std::optional<CArray<float>>& multiplier,
                               const std::optional<CArray<float>>& bias,
                               const std::optional<CArray<int32_t>>& threshold,
                               const std::optional<CArray<uint8_t>>& flip) {
  OutputTransform t;
  t.kind = parse_output(output);
  if (t.kind == OutputKind::kFloat) {
    t.multiplier = to_vector(multiplier, out_channels, "multiplier");
    t.bias = to_vector(bias, out_channels, "bias");
  } else if (t.kind == OutputKind::kBits) {
    t.threshold = to_vector(threshold, out_channels, "threshold");
    t.flip = flip ? to_vector(flip, out_channels, "flip") : std::vector<uint8_t>(out_channels, 0);
  }
  return t;
}

// The output array for an output kind: the caller's `out` (checked) or a new one.
py::array output_for(OutputKind kind, const std::optional<py::array>& out, const std::vector<py::ssize_t>& shape,
                     const char* what, void** dst) {
  py::array result;
  switch (kind) {
    case OutputKind::kInt32: {
      auto o = output_array<int32_t>(out, shape, what);
      *dst = o.mutable_data();
      result = o;
      break;
    }
    case OutputKind::kFloat: {
      auto o = output_array<float>(out, shape, what);
      *dst = o.mutable_data();
      result = o;
      break;
    }
    case OutputKind::kBits: {
      auto o = output_array<uint64_t>(out, shape, what);
      *dst = o.mutable_data();
      result = o;
      break;
    }
  }
  return result;
}


py::array run_conv(const BinaryConv2d& op, const CArray<uint64_t>& x, const std::optional<py::array>& out,
                   ThreadPool* pool, const std::optional<std::string>& isa_name_opt) {
  const Isa isa = resolve_isa(isa_name_opt);
  if (x.ndim() != 4 || x.shape(3) != op.in_words()) {
    throw std::invalid_argument("BinaryConv2d.run: input must be packed NHWC (N, H, W, " +
                                std::to_string(op.in_words()) + ") uint64, got " + shape_str(x));
  }
  const int n = static_cast<int>(x.shape(0)), h = static_cast<int>(x.shape(1)), w = static_cast<int>(x.shape(2));
  const BconvConfig& c = op.config();
  if (n <= 0 || h + 2 * c.pad_h < c.kernel_h || w + 2 * c.pad_w < c.kernel_w) {
    throw std::invalid_argument("BinaryConv2d.run: input " + shape_str(x) + " is smaller than the kernel");
  }
  const std::vector<py::ssize_t> shape{n, op.out_h(h), op.out_w(w), op.out_pixel_elements()};
  void* dst = nullptr;
  py::array result = output_for(op.output_kind(), out, shape, "BinaryConv2d.run", &dst);
  {
    py::gil_scoped_release release;
    op.run(x.data(), n, h, w, dst, pool, isa);
  }
  return result;
}

py::array run_linear(const BinaryLinear& op, const CArray<uint64_t>& x, const std::optional<py::array>& out,
                     ThreadPool* pool, const std::optional<std::string>& isa_name_opt) {
  const Isa isa = resolve_isa(isa_name_opt);
  if (x.ndim() != 2 || x.shape(1) != op.in_words() || x.shape(0) <= 0) {
    throw std::invalid_argument("BinaryLinear.run: input must be packed (M, " + std::to_string(op.in_words()) +
                                ") uint64 with M >= 1, got " + shape_str(x));
  }
  const std::vector<py::ssize_t> shape{x.shape(0), op.out_row_elements()};
  void* dst = nullptr;
  py::array result = output_for(op.output_kind(), out, shape, "BinaryLinear.run", &dst);
  {
    py::gil_scoped_release release;
    op.run(x.data(), static_cast<int>(x.shape(0)), dst, pool, isa);
  }
  return result;
}

}  // namespace

void register_binary(py::module_& m) {
  m.def(
      "bitpack_nhwc",
      [](const CArray<float>& x, const std::optional<std::string>& isa) {
        if (x.ndim() < 1) throw std::invalid_argument("bitpack_nhwc: need at least 1 dimension (channels last)");
        const int channels = static_cast<int>(x.shape(x.ndim() - 1));
        if (channels <= 0) throw std::invalid_argument("bitpack_nhwc: channel dimension is empty");
        std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
        shape.back() = words_for_bits(channels);
        CArray<uint64_t> out(shape);
        const size_t rows = static_cast<size_t>(x.size() / channels);
        const auto fn = binary_kernels(resolve_isa(isa)).bitpack_rows;
        {
          py::gil_scoped_release release;
          fn(x.data(), rows, channels, out.mutable_data());
        }
        return out;
      },
      py::arg("x"), py::arg("isa") = py::none(),
      "Pack float32 (..., C) along the last axis: bit=1 where x < 0; returns uint64 (..., ceil(C/64)).");
  m.def(
      "bitpack_nchw",
      [](const CArray<float>& x, const std::optional<std::string>& isa) {
        if (x.ndim() != 4) throw std::invalid_argument("bitpack_nchw: input must be (N, C, H, W), got " + shape_str(x));
        const int n = static_cast<int>(x.shape(0)), c = static_cast<int>(x.shape(1));
        const size_t pixels = static_cast<size_t>(x.shape(2) * x.shape(3));
        if (c <= 0) throw std::invalid_argument("bitpack_nchw: channel dimension is empty");
        const int words = words_for_bits(c);
        CArray<uint64_t> out({x.shape(0), x.shape(2), x.shape(3), static_cast<py::ssize_t>(words)});
        const auto fn = binary_kernels(resolve_isa(isa)).bitpack_planar;
        {
          py::gil_scoped_release release;
          for (int i = 0; i < n; ++i)
            fn(x.data() + static_cast<size_t>(i) * c * pixels, c, pixels,
               out.mutable_data() + static_cast<size_t>(i) * pixels * words);
        }
        return out;
      },
      py::arg("x"), py::arg("isa") = py::none(),
      "Pack float32 NCHW into uint64 NHWC words (N, H, W, ceil(C/64)); bit=1 where x < 0.");

  py::class_<BinaryConv2d>(m, "BinaryConv2d",
                           "Binary convolution on packed NHWC input with a fused output transform.")
      .def(py::init([](const CArray<uint64_t>& weights, int in_channels, std::pair<int, int> stride,
                       std::pair<int, int> padding, const std::string& pad_mode, const std::string& output,
                       const std::optional<CArray<float>>& multiplier, const std::optional<CArray<float>>& bias,
                       const std::optional<CArray<int32_t>>& threshold, const std::optional<CArray<uint8_t>>& flip) {
             if (weights.ndim() != 4 || in_channels <= 0 || weights.shape(3) != words_for_bits(in_channels)) {
               throw std::invalid_argument("BinaryConv2d: weights must be packed (O, KH, KW, ceil(in_channels/64)) "
                                           "uint64, got " + shape_str(weights) + " for in_channels=" +
                                           std::to_string(in_channels));
             }
             BconvConfig c;
             c.in_channels = in_channels;
             c.out_channels = static_cast<int>(weights.shape(0));
             c.kernel_h = static_cast<int>(weights.shape(1));
             c.kernel_w = static_cast<int>(weights.shape(2));
             c.stride_h = stride.first;
             c.stride_w = stride.second;
             c.pad_h = padding.first;
             c.pad_w = padding.second;
             c.pad_mode = parse_pad_mode(pad_mode);
             return new BinaryConv2d(c, weights.data(),
                                     make_transform(output, c.out_channels, multiplier, bias, threshold, flip));
           }),
           py::arg("weights"), py::arg("in_channels"), py::arg("stride") = std::pair<int, int>{1, 1},
           py::arg("padding") = std::pair<int, int>{0, 0}, py::arg("pad_mode") = "zero",
           py::arg("output") = "int32", py::arg("multiplier") = py::none(), py::arg("bias") = py::none(),
           py::arg("threshold") = py::none(), py::arg("flip") = py::none())
      .def("run", &run_conv, py::arg("x"), py::arg("out") = py::none(), py::arg("pool") = nullptr,
           py::arg("isa") = py::none(),
           "Run on packed NHWC input (N, H, W, in_words); returns NHWC int32/float32 (N, OH, OW, O) or packed "
           "uint64 bits (N, OH, OW, ceil(O/64)).")
      .def("output_shape", [](const BinaryConv2d& op, int n, int h, int w) {
             return py::make_tuple(n, op.out_h(h), op.out_w(w), op.out_pixel_elements());
           })
      .def_property_readonly("in_channels", [](const BinaryConv2d& op) { return op.config().in_channels; })
      .def_property_readonly("out_channels", [](const BinaryConv2d& op) { return op.config().out_channels; })
      .def_property_readonly("packed_bytes", &BinaryConv2d::packed_bytes,
                             "Bytes held for the repacked weights and per-block constants.");

  py::class_<BinaryLinear>(m, "BinaryLinear",
                           "Binary dense layer (binary GEMM) on packed rows with a fused output transform.")
      .def(py::init([](const CArray<uint64_t>& weights, int in_features, const std::string& output,
                       const std::optional<CArray<float>>& multiplier, const std::optional<CArray<float>>& bias,
                       const std::optional<CArray<int32_t>>& threshold, const std::optional<CArray<uint8_t>>& flip) {
             if (weights.ndim() != 2 || in_features <= 0 || weights.shape(1) != words_for_bits(in_features) ||
                 weights.shape(0) <= 0) {
               throw std::invalid_argument("BinaryLinear: weights must be packed (O, ceil(in_features/64)) uint64, "
                                           "got " + shape_str(weights) + " for in_features=" +
                                           std::to_string(in_features));
             }
             const int out_features = static_cast<int>(weights.shape(0));
             return new BinaryLinear(in_features, out_features, weights.data(),
                                     make_transform(output, out_features, multiplier, bias, threshold, flip));
           }),
           py::arg("weights"), py::arg("in_features"), py::arg("output") = "int32",
           py::arg("multiplier") = py::none(), py::arg("bias") = py::none(), py::arg("threshold") = py::none(),
           py::arg("flip") = py::none())
      .def("run", &run_linear, py::arg("x"), py::arg("out") = py::none(), py::arg("pool") = nullptr,
           py::arg("isa") = py::none(),
           "Run on packed rows (M, in_words); returns int32/float32 (M, O) or packed uint64 bits (M, ceil(O/64)).")
      .def_property_readonly("in_features", &BinaryLinear::in_features)
      .def_property_readonly("out_features", &BinaryLinear::out_features);

  m.def(
      "bgemm_register_peak",
      [](long iterations) {
        if (iterations <= 0) throw std::invalid_argument("iterations must be positive");
        if (!isa_available(Isa::kAvx512)) throw std::runtime_error("the AVX-512 VPOPCNTDQ path is not available");
        py::gil_scoped_release release;
        return bgemm_register_peak_avx512(iterations);
      },
      py::arg("iterations") = 20000000,
      "Binary MACs/s of the AVX-512 XOR+VPOPCNTQ+ADD mix on registers only: the ceiling the bgemm kernel can "
      "approach on this machine (one thread).");

  m.def(
      "binary_maxpool2d",
      [](const CArray<uint64_t>& x, std::pair<int, int> kernel, std::optional<std::pair<int, int>> stride,
         std::pair<int, int> padding, ThreadPool* pool, const std::optional<std::string>& isa) {
        if (x.ndim() != 4) throw std::invalid_argument("binary_maxpool2d: input must be packed (N, H, W, words), got " + shape_str(x));
        const auto st = stride ? *stride : kernel;
        PoolGeometry g{static_cast<int>(x.shape(1)), static_cast<int>(x.shape(2)), kernel.first, kernel.second,
                       st.first, st.second, padding.first, padding.second, 0, 0};
        if (g.kernel_h <= 0 || g.kernel_w <= 0 || g.stride_h <= 0 || g.stride_w <= 0 || g.pad_h < 0 || g.pad_w < 0 ||
            2 * g.pad_h > g.kernel_h || 2 * g.pad_w > g.kernel_w) {
          throw std::invalid_argument("binary_maxpool2d: kernel/stride must be positive and padding at most half the kernel");
        }
        if (g.in_h + 2 * g.pad_h < g.kernel_h || g.in_w + 2 * g.pad_w < g.kernel_w) {
          throw std::invalid_argument("binary_maxpool2d: input " + shape_str(x) + " is smaller than the kernel");
        }
        g.out_h = (g.in_h + 2 * g.pad_h - g.kernel_h) / g.stride_h + 1;
        g.out_w = (g.in_w + 2 * g.pad_w - g.kernel_w) / g.stride_w + 1;
        const int words = static_cast<int>(x.shape(3));
        const int n = static_cast<int>(x.shape(0));
        CArray<uint64_t> out({x.shape(0), static_cast<py::ssize_t>(g.out_h), static_cast<py::ssize_t>(g.out_w), x.shape(3)});
        const auto fn = binary_kernels(resolve_isa(isa)).binary_maxpool;
        const uint64_t* src = x.data();
        uint64_t* dst = out.mutable_data();
        {
          py::gil_scoped_release release;
          const int64_t in_image = static_cast<int64_t>(g.in_h) * g.in_w * words;
          const int64_t out_image = static_cast<int64_t>(g.out_h) * g.out_w * words;
          parallel_for(pool, static_cast<size_t>(n) * g.out_h, 1, [&](size_t b, size_t e) {
            for (size_t r = b; r < e; ++r) {
              const int img = static_cast<int>(r / g.out_h), row = static_cast<int>(r % g.out_h);
              fn(src + img * in_image, words, g, row, row + 1, dst + img * out_image);
            }
          });
        }
        return out;
      },
      py::arg("x"), py::arg("kernel"), py::arg("stride") = py::none(), py::arg("padding") = std::pair<int, int>{0, 0},
      py::arg("pool") = nullptr, py::arg("isa") = py::none(),
      "Max-pool packed NHWC bits (bitwise AND over the window; padding ignored).");
}

}  // namespace xnor::py_bind
