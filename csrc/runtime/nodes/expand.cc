// expand: numpy broadcast_to(x, shape) (input axes right-aligned; a size-1 axis repeats). When
// the ranks agree and shape[0] == 1 the output's axis 0 is the input's (the batch carries
// through). A copy, no arithmetic: identical on every ISA path and thread count.
#include <algorithm>
#include <cstring>

#include "runtime/nodes/axis_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

constexpr AttrSchema kShapeAttrs[] = {{"shape", AttrType::kInts, true}};

class ExpandNode final : public Node {
 public:
  explicit ExpandNode(const OpArgs& a)
      : Node(a.op(), {DType::kF32}, DType::kF32), shape_(int_list(a, "shape", 1, kMaxDim)) {}
  Shape infer(const Shape* in, size_t) const override {
    const Shape& x = in[0];
    if (x.rank > shape_.rank) fail("cannot expand " + x.str() + " to " + shape_.str());
    Shape out = shape_;
    if (x.rank == shape_.rank && shape_.d[0] == 1) out.d[0] = x.d[0];
    const int lead = shape_.rank - x.rank;
    for (int i = 0; i < x.rank; ++i) {
      if (x.d[i] != 1 && x.d[i] != out.d[lead + i]) fail("cannot expand " + x.str() + " to " + shape_.str());
    }
    return out;
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out,
           const Shape& os) const override {
    const float* x = static_cast<const float*>(in[0]);
    float* y = static_cast<float*>(out);
    const int r = os.rank, lead = os.rank - s[0].rank;
    int64_t xst[kMaxRank];
    strides_of(s[0], xst);
    int64_t st[kMaxRank];  // input stride of each output axis, 0 where it broadcasts
    for (int i = 0; i < r; ++i) st[i] = (i < lead || s[0].d[i - lead] == 1) ? 0 : xst[i - lead];
    const int64_t cols = os.d[r - 1];
    const bool copy = st[r - 1] == 1;
    for_rows(ctx, os.rows(), cols, [&](size_t first, size_t count) {
      for (size_t row = first; row < first + count; ++row) {
        int64_t off = 0, rest = static_cast<int64_t>(row);
        for (int i = r - 2; i >= 0; --i) {
          off += (rest % os.d[i]) * st[i];
          rest /= os.d[i];
        }
        float* yr = y + static_cast<int64_t>(row) * cols;
        if (copy) {
          std::memcpy(yr, x + off, static_cast<size_t>(cols) * sizeof(float));
        } else {
          std::fill(yr, yr + cols, x[off]);
        }
      }
    });
  }

 private:
  Shape shape_;
};

}  // namespace

const OpSchema expand_schema{"expand", 1, 1, kShapeAttrs, {}};

std::unique_ptr<Node> make_expand(const OpArgs& a) { return std::make_unique<ExpandNode>(a); }

}  // namespace xnor::ops
