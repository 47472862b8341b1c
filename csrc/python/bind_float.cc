#include <pybind11/stl.h>

#include <string>

#include "kernels/conv2d.h"
#include "kernels/fpool.h"
#include "kernels/linear.h"
#include "python/common.h"

namespace xnor::py_bind {
namespace {

using IntPair = std::pair<int, int>;

std::string pair_str(const IntPair& p) { return "(" + std::to_string(p.first) + ", " + std::to_string(p.second) + ")"; }

const float* optional_bias(const std::optional<CArray<float>>& bias, py::ssize_t n, const char* op) {
  if (!bias) return nullptr;
  if (bias->ndim() != 1 || bias->shape(0) != n) {
    throw std::invalid_argument(std::string(op) + ": bias must have shape (" + std::to_string(n) + ",), got " +
                                shape_str(*bias));
  }
  return bias->data();
}

CArray<float> run_conv(const FloatConv2d& op, const CArray<float>& x, const std::optional<py::array>& out,
                       ThreadPool* pool, const std::optional<std::string>& isa_name_opt) {
  const Isa isa = resolve_isa(isa_name_opt);
  const FloatConvConfig& c = op.config();
  if (x.ndim() != 4 || x.shape(3) != c.in_channels) {
    throw std::invalid_argument("Conv2d.run: input must be NHWC (N, H, W, " + std::to_string(c.in_channels) +
                                ") float32, got " + shape_str(x));
  }
  const int n = static_cast<int>(x.shape(0)), h = static_cast<int>(x.shape(1)), w = static_cast<int>(x.shape(2));
  if (n <= 0 || h <= 0 || w <= 0 || op.out_h(h) <= 0 || op.out_w(w) <= 0) {
    throw std::invalid_argument("Conv2d.run: input " + shape_str(x) + " is empty or smaller than the kernel (" +
                                std::to_string(c.kernel_h) + ", " + std::to_string(c.kernel_w) + ") with padding (" +
                                std::to_string(c.pad_h) + ", " + std::to_string(c.pad_w) + ")");
  }
  auto o = output_array<float>(out, {n, op.out_h(h), op.out_w(w), c.out_channels}, "Conv2d.run");
  float* dst = o.mutable_data();
  {
    py::gil_scoped_release release;
    op.run(x.data(), n, h, w, dst, pool, isa);
  }
  return o;
}

CArray<float> run_linear(const FloatLinear& op, const CArray<float>& x, const std::optional<py::array>& out,
                         ThreadPool* pool, const std::optional<std::string>& isa_name_opt) {
  const Isa isa = resolve_isa(isa_name_opt);
  if (x.ndim() != 2 || x.shape(1) != static_cast<py::ssize_t>(op.in_features())) {
    throw std::invalid_argument("Linear.run: input must be (M, " + std::to_string(op.in_features()) +
                                ") float32, got " + shape_str(x));
  }
  auto o = output_array<float>(out, {x.shape(0), static_cast<py::ssize_t>(op.out_features())}, "Linear.run");
  float* dst = o.mutable_data();
  {
    py::gil_scoped_release release;
    op.run(x.data(), static_cast<size_t>(x.shape(0)), dst, pool, isa);
  }
  return o;
}

FloatPoolGeometry pool_geometry(const CArray<float>& x, IntPair kernel, const std::optional<IntPair>& stride,
                                IntPair padding, bool count_include_pad, const char* op) {
  if (x.ndim() != 4) throw std::invalid_argument(std::string(op) + ": input must be NHWC (N, H, W, C), got " + shape_str(x));
  const IntPair st = stride ? *stride : kernel;
  FloatPoolGeometry g{static_cast<int>(x.shape(1)), static_cast<int>(x.shape(2)), static_cast<int>(x.shape(3)),
                      kernel.first, kernel.second, st.first, st.second, padding.first, padding.second, 0, 0,
                      count_include_pad};
  if (x.shape(0) <= 0) throw std::invalid_argument(std::string(op) + ": batch is empty, got " + shape_str(x));
  float_pool_geometry(g, op);
  return g;
}

template <void (*Pool)(const float*, int, const FloatPoolGeometry&, float*, ThreadPool*, Isa)>
CArray<float> run_pool(const CArray<float>& x, const FloatPoolGeometry& g, ThreadPool* pool,
                       const std::optional<std::string>& isa_name_opt) {
  const Isa isa = resolve_isa(isa_name_opt);
  CArray<float> out({x.shape(0), static_cast<py::ssize_t>(g.out_h), static_cast<py::ssize_t>(g.out_w), x.shape(3)});
  float* dst = out.mutable_data();
  {
    py::gil_scoped_release release;
    Pool(x.data(), static_cast<int>(x.shape(0)), g, dst, pool, isa);
  }
  return out;
}

}  // namespace

void register_float(py::module_& m) {
  py::class_<FloatConv2d>(m, "Conv2d", "Float 2-D convolution on NHWC float32 input (first layers).")
      .def(py::init([](const CArray<float>& weight, const std::optional<CArray<float>>& bias, IntPair stride,
                       IntPair padding, bool relu) {
             if (weight.ndim() != 4 || weight.size() == 0) {
               throw std::invalid_argument("Conv2d: weight must be OHWI (O, KH, KW, I) float32, got " +
                                           shape_str(weight));
             }
             if (stride.first <= 0 || stride.second <= 0 || padding.first < 0 || padding.second < 0) {
               throw std::invalid_argument("Conv2d: stride must be positive and padding >= 0, got stride " +
                                           pair_str(stride) + ", padding " + pair_str(padding));
             }
             FloatConvConfig c;
             c.out_channels = static_cast<int>(weight.shape(0));
             c.kernel_h = static_cast<int>(weight.shape(1));
             c.kernel_w = static_cast<int>(weight.shape(2));
             c.in_channels = static_cast<int>(weight.shape(3));
             c.stride_h = stride.first;
             c.stride_w = stride.second;
             c.pad_h = padding.first;
             c.pad_w = padding.second;
             c.relu = relu;
             return new FloatConv2d(c, weight.data(), optional_bias(bias, weight.shape(0), "Conv2d"));
           }),
           py::arg("weight"), py::arg("bias") = py::none(), py::arg("stride") = IntPair{1, 1},
           py::arg("padding") = IntPair{0, 0}, py::arg("relu") = false)
      .def("run", &run_conv, py::arg("x"), py::arg("out") = py::none(), py::arg("pool") = nullptr,
           py::arg("isa") = py::none(), "Run on NHWC float32 (N, H, W, I); returns NHWC float32 (N, OH, OW, O).")
      .def("output_shape", [](const FloatConv2d& op, int n, int h, int w) {
             return py::make_tuple(n, op.out_h(h), op.out_w(w), op.config().out_channels);
           })
      .def_property_readonly("in_channels", [](const FloatConv2d& op) { return op.config().in_channels; })
      .def_property_readonly("out_channels", [](const FloatConv2d& op) { return op.config().out_channels; });

  py::class_<FloatLinear>(m, "Linear", "Float fully-connected layer y = x W^T + b.")
      .def(py::init([](const CArray<float>& weight, const std::optional<CArray<float>>& bias, bool relu) {
             if (weight.ndim() != 2 || weight.size() == 0) {
               throw std::invalid_argument("Linear: weight must be (N, K) float32, got " + shape_str(weight));
             }
             return new FloatLinear(static_cast<size_t>(weight.shape(0)), static_cast<size_t>(weight.shape(1)),
                                    weight.data(), optional_bias(bias, weight.shape(0), "Linear"), relu);
           }),
           py::arg("weight"), py::arg("bias") = py::none(), py::arg("relu") = false)
      .def("run", &run_linear, py::arg("x"), py::arg("out") = py::none(), py::arg("pool") = nullptr,
           py::arg("isa") = py::none(), "Run on (M, K) float32; returns (M, N) float32.")
      .def_property_readonly("in_features", &FloatLinear::in_features)
      .def_property_readonly("out_features", &FloatLinear::out_features);

  m.def(
      "maxpool2d",
      [](const CArray<float>& x, IntPair kernel, const std::optional<IntPair>& stride, IntPair padding,
         ThreadPool* pool, const std::optional<std::string>& isa) {
        return run_pool<float_maxpool2d>(x, pool_geometry(x, kernel, stride, padding, false, "maxpool2d"), pool, isa);
      },
      py::arg("x"), py::arg("kernel"), py::arg("stride") = py::none(), py::arg("padding") = IntPair{0, 0},
      py::arg("pool") = nullptr, py::arg("isa") = py::none(),
      "Max-pool NHWC float32 (padding ignored, like PyTorch); stride defaults to the kernel.");
  m.def(
      "avgpool2d",
      [](const CArray<float>& x, IntPair kernel, const std::optional<IntPair>& stride, IntPair padding,
         bool count_include_pad, ThreadPool* pool, const std::optional<std::string>& isa) {
        return run_pool<float_avgpool2d>(
            x, pool_geometry(x, kernel, stride, padding, count_include_pad, "avgpool2d"), pool, isa);
      },
      py::arg("x"), py::arg("kernel"), py::arg("stride") = py::none(), py::arg("padding") = IntPair{0, 0},
      py::arg("count_include_pad") = true, py::arg("pool") = nullptr, py::arg("isa") = py::none(),
      "Average-pool NHWC float32 like torch avg_pool2d; stride defaults to the kernel.");
  m.def(
      "global_avgpool",
      [](const CArray<float>& x, ThreadPool* pool, const std::optional<std::string>& isa_name_opt) {
        if (x.ndim() != 4 || x.shape(0) <= 0 || x.shape(1) <= 0 || x.shape(2) <= 0 || x.shape(3) <= 0) {
          throw std::invalid_argument("global_avgpool: input must be non-empty NHWC (N, H, W, C), got " +
                                      shape_str(x));
        }
        const Isa isa = resolve_isa(isa_name_opt);
        CArray<float> out({x.shape(0), x.shape(3)});
        float* dst = out.mutable_data();
        {
          py::gil_scoped_release release;
          float_global_avgpool(x.data(), static_cast<size_t>(x.shape(0)), static_cast<size_t>(x.shape(1) * x.shape(2)),
                               static_cast<size_t>(x.shape(3)), dst, pool, isa);
        }
        return out;
      },
      py::arg("x"), py::arg("pool") = nullptr, py::arg("isa") = py::none(),
      "Global average pool NHWC float32 (N, H, W, C) -> (N, C).");
}

}  // namespace xnor::py_bind
