// Classify a binary PGM (P5) image with a .xbin model, through the public C++ API only.
//
//   classify MODEL.xbin IMAGE.pgm [--top N] [--threads N]
//
// Prints what `xnorinfer run --top N MODEL IMAGE` prints for the image (the top classes with
// their probabilities), then the model's raw outputs on a line "logits: ...". The image gets
// the model's preprocessing as its metadata records it (pixels / 255, then (x - mean) / std);
// it must already have the model's input size: this example does not resize.
#include <xnorinfer/xnorinfer.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct Image {
  int width = 0, height = 0;
  std::vector<unsigned char> pixels;  // row-major, one byte per pixel
};

// A P5 file: "P5", width, height, maxval (255), each separated by whitespace (comments
// from '#' to the end of a line allowed), one whitespace byte, then width * height bytes.
Image read_pgm(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open: " + std::strerror(errno));
  const std::vector<unsigned char> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t pos = 0;
  auto skip_space = [&] {
    while (pos < data.size()) {
      if (data[pos] == '#') {
        while (pos < data.size() && data[pos] != '\n') ++pos;
      } else if (std::isspace(data[pos])) {
        ++pos;
      } else {
        break;
      }
    }
  };
  auto number = [&](const char* what) {
    skip_space();
    long value = 0;
    size_t digits = 0;
    while (pos < data.size() && data[pos] >= '0' && data[pos] <= '9' && digits < 9) {
      value = value * 10 + (data[pos++] - '0');
      ++digits;
    }
    if (digits == 0 || value < 1) throw std::runtime_error(path + ": bad PGM " + what);
    return value;
  };
  if (data.size() < 2 || data[0] != 'P' || data[1] != '5') {
    throw std::runtime_error(path + ": not a binary PGM image (P5)");
  }
  pos = 2;
  Image image;
  image.width = static_cast<int>(number("width"));
  image.height = static_cast<int>(number("height"));
  if (number("maxval") != 255) throw std::runtime_error(path + ": only 8-bit PGM images (maxval 255) are supported");
  if (pos >= data.size() || !std::isspace(data[pos])) throw std::runtime_error(path + ": bad PGM header");
  ++pos;
  const size_t count = static_cast<size_t>(image.width) * static_cast<size_t>(image.height);
  if (data.size() - pos < count) throw std::runtime_error(path + ": truncated PGM image");
  image.pixels.assign(data.begin() + static_cast<long>(pos), data.begin() + static_cast<long>(pos + count));
  return image;
}

// The model input (1, C, H, W) from a grayscale image, as xnorinfer/preprocess.py computes it
// in float32: x / 255, then (x - mean) / std per channel (a grayscale image fills every channel).
std::vector<float> preprocess(const Image& image, const xnorinfer::Preprocessing& p, const std::string& path) {
  if (image.width != p.width || image.height != p.height) {
    throw std::runtime_error(path + ": image is " + std::to_string(image.width) + "x" + std::to_string(image.height) +
                             ", the model takes " + std::to_string(p.width) + "x" + std::to_string(p.height) +
                             " (this example does not resize)");
  }
  const size_t plane = static_cast<size_t>(p.width) * static_cast<size_t>(p.height);
  std::vector<float> x(static_cast<size_t>(p.channels) * plane);
  for (int64_t c = 0; c < p.channels; ++c) {
    const auto at = [&](const std::vector<double>& v) { return static_cast<float>(v.size() == 1 ? v[0] : v[c]); };
    for (size_t i = 0; i < plane; ++i) {
      float v = static_cast<float>(image.pixels[i]) / 255.0f;
      if (!p.mean.empty()) v = v - at(p.mean);
      if (!p.std.empty()) v = v / at(p.std);
      x[static_cast<size_t>(c) * plane + i] = v;
    }
  }
  return x;
}

int run(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  size_t top = 5;
  int threads = 1;
  std::vector<std::string> positional;
  for (size_t i = 0; i < args.size(); ++i) {
    if ((args[i] == "--top" || args[i] == "--threads") && i + 1 < args.size()) {
      const long v = std::strtol(args[i + 1].c_str(), nullptr, 10);
      if (v < 1) throw std::invalid_argument(args[i] + " must be a positive integer");
      if (args[i] == "--top")
        top = static_cast<size_t>(v);
      else
        threads = static_cast<int>(v);
      ++i;
    } else {
      positional.push_back(args[i]);
    }
  }
  if (positional.size() != 2) {
    std::fprintf(stderr, "usage: classify MODEL.xbin IMAGE.pgm [--top N] [--threads N]\n");
    return 2;
  }
  const std::string& image_path = positional[1];
  const xnorinfer::Model model = xnorinfer::Model::load(positional[0]);
  const xnorinfer::Preprocessing& p = model.preprocessing();
  const std::vector<float> x = preprocess(read_pgm(image_path), p, image_path);
  xnorinfer::Session session(model, threads);
  const std::vector<xnorinfer::Tensor> outputs = session.run(x.data(), {1, p.channels, p.height, p.width});
  const std::vector<float>& logits = outputs.at(0).data;

  // Class probabilities as `xnorinfer run` computes them (float64 softmax unless the model
  // already outputs probabilities), ordered by probability, ties by class index.
  std::vector<double> prob(logits.begin(), logits.end());
  if (!model.outputs_are_probabilities()) {
    const double top_logit = *std::max_element(prob.begin(), prob.end());
    double sum = 0.0;
    for (double& v : prob) sum += (v = std::exp(v - top_logit));
    for (double& v : prob) v /= sum;
  }
  std::vector<size_t> order(prob.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return prob[a] > prob[b]; });
  order.resize(std::min(top, order.size()));
  const std::vector<std::string>& labels = model.labels();
  std::printf("%s: ", image_path.c_str());
  for (size_t k = 0; k < order.size(); ++k) {
    const size_t i = order[k];
    const std::string label = i < labels.size() ? labels[i] : std::to_string(i);
    std::printf("%s%s (%.3f)", k ? ", " : "", label.c_str(), prob[i]);
  }
  std::printf("\nlogits:");
  for (const float v : logits) std::printf(" %.9g", static_cast<double>(v));  // 9 digits: the exact float
  std::printf("\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "classify: error: %s\n", e.what());
    return 1;
  }
}
