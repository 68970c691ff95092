// rlpol_verify BUNDLE_DIR [--atol A] [--rtol R]
//
// Replays every test vector of an rlpol bundle (test_data_set_N/input_i.pb, output_j.pb) through
// model.pt with torch::jit::load and, when the bundle has one, model.aoti.pt2 with libtorch's
// AOTInductor loader. Reads rlpol.json for the graph's input and output names, checks that every
// data set holds them in that order, prints the largest |diff| of each output of each model and
// exits 0 when all match (|diff| <= atol + rtol * |expected| for floats, exact for integers),
// 1 on a mismatch, 2 when the bundle cannot be read.
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/script.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "mini_json.hpp"
#include "tensor_proto.hpp"

namespace fs = std::filesystem;

namespace {

struct DataSet {
  std::string name;
  std::vector<tensor_proto::Tensor> inputs, outputs;
};

std::string read_file(const fs::path& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw std::runtime_error("cannot read " + path.string());
  std::ostringstream bytes;
  bytes << file.rdbuf();
  return bytes.str();
}

std::vector<std::string> names(const mini_json::Value& metadata,
                               std::initializer_list<const char*> fields) {
  std::vector<std::string> out;
  for (const char* field : fields)
    for (const auto& entry : metadata.at(field).array) out.push_back(entry.at("name").string);
  return out;
}

std::vector<tensor_proto::Tensor> read_tensors(const fs::path& dir, const std::string& role) {
  std::vector<tensor_proto::Tensor> tensors;
  for (size_t i = 0;; ++i) {
    fs::path file = dir / (role + "_" + std::to_string(i) + ".pb");
    if (!fs::exists(file)) break;
    tensors.push_back(tensor_proto::parse(read_file(file)));
  }
  return tensors;
}

std::vector<DataSet> read_data_sets(const fs::path& bundle) {
  std::vector<DataSet> sets;
  for (size_t n = 0;; ++n) {
    fs::path dir = bundle / ("test_data_set_" + std::to_string(n));
    if (!fs::is_directory(dir)) break;
    sets.push_back({dir.filename().string(), read_tensors(dir, "input"), read_tensors(dir, "output")});
  }
  if (sets.empty()) throw std::runtime_error(bundle.string() + " holds no test_data_set_0");
  return sets;
}

void check_names(const DataSet& set, const std::vector<tensor_proto::Tensor>& tensors,
                 const std::vector<std::string>& expected, const char* role) {
  std::vector<std::string> found;
  for (const auto& t : tensors) found.push_back(t.name);
  if (found != expected)
    throw std::runtime_error(set.name + ": its " + role +
                             " are not the graph's (rlpol.json); rewrite the bundle");
}

c10::ScalarType scalar_type(int32_t data_type) {
  switch (data_type) {
    case 1: return torch::kFloat32;
    case 2: return torch::kUInt8;
    case 3: return torch::kInt8;
    case 5: return torch::kInt16;
    case 6: return torch::kInt32;
    case 7: return torch::kInt64;
    case 9: return torch::kBool;
    case 10: return torch::kFloat16;
    case 11: return torch::kFloat64;
    case 16: return torch::kBFloat16;
    default: throw std::runtime_error("unsupported data_type " + std::to_string(data_type));
  }
}

torch::Tensor to_tensor(const tensor_proto::Tensor& t) {
  auto options = torch::TensorOptions().dtype(scalar_type(t.data_type));
  torch::Tensor out = torch::empty(t.dims, options);
  std::memcpy(out.data_ptr(), t.raw_data.data(), t.raw_data.size());
  return out;
}

// (max |actual - expected|, matched) for one output of one data set
std::pair<double, bool> compare(const torch::Tensor& expected, const torch::Tensor& actual,
                                double atol, double rtol) {
  if (expected.sizes() != actual.sizes() || expected.scalar_type() != actual.scalar_type())
    return {std::numeric_limits<double>::infinity(), false};
  if (expected.numel() == 0) return {0.0, true};
  if (!expected.is_floating_point()) {
    auto diff = (expected.to(torch::kInt64) - actual.to(torch::kInt64)).abs();
    double worst = diff.max().item<double>();
    return {worst, worst == 0.0};
  }
  auto e = expected.to(torch::kFloat64), a = actual.to(torch::kFloat64);
  auto same = (e == a) | (e.isnan() & a.isnan());
  auto diff = torch::where(same, torch::zeros_like(e), (a - e).abs());
  diff = torch::where(diff.isnan(), torch::full_like(diff, INFINITY), diff);
  bool ok = (same | (diff <= atol + rtol * e.abs())).all().item<bool>();
  return {diff.max().item<double>(), ok};
}

using Runner = std::function<std::vector<torch::Tensor>(const std::vector<torch::Tensor>&)>;

// Runs every data set through `run`; prints one row per output; returns whether all matched.
bool verify_model(const std::string& model, const Runner& run, const std::vector<DataSet>& sets,
                  const std::vector<std::string>& outputs, double atol, double rtol) {
  std::vector<double> worst(outputs.size(), 0.0);
  std::vector<std::string> where(outputs.size(), sets.front().name);
  std::vector<bool> ok(outputs.size(), true);
  for (const auto& set : sets) {
    std::vector<torch::Tensor> inputs;
    for (const auto& t : set.inputs) inputs.push_back(to_tensor(t));
    std::vector<torch::Tensor> actual = run(inputs);
    if (actual.size() != outputs.size())
      throw std::runtime_error(model + " returned " + std::to_string(actual.size()) +
                               " outputs, rlpol.json declares " + std::to_string(outputs.size()));
    for (size_t j = 0; j < outputs.size(); ++j) {
      auto [diff, matched] = compare(to_tensor(set.outputs[j]), actual[j], atol, rtol);
      ok[j] = ok[j] && matched;
      if (diff > worst[j]) { worst[j] = diff; where[j] = set.name; }
    }
  }
  bool all = true;
  for (size_t j = 0; j < outputs.size(); ++j) {
    std::printf("| %-15s | %-28s | %-10.3g | %-16s | %-8s |\n", model.c_str(), outputs[j].c_str(),
                worst[j], where[j].c_str(), ok[j] ? "ok" : "MISMATCH");
    all = all && ok[j];
  }
  return all;
}

std::vector<torch::Tensor> as_tensors(const c10::IValue& result) {
  std::vector<torch::Tensor> out;
  if (result.isTuple()) {
    for (const auto& value : result.toTupleRef().elements()) out.push_back(value.toTensor());
  } else if (result.isTensorList()) {
    for (const auto& value : result.toTensorVector()) out.push_back(value);
  } else {
    out.push_back(result.toTensor());
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: rlpol_verify BUNDLE_DIR [--atol A] [--rtol R]\n";
    return 2;
  }
  fs::path bundle = argv[1];
  double atol = 1e-4, rtol = 1e-5;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--atol") atol = std::stod(argv[i + 1]);
    else if (flag == "--rtol") rtol = std::stod(argv[i + 1]);
    else { std::cerr << "unknown option " << flag << "\n"; return 2; }
  }
  try {
    mini_json::Value metadata = mini_json::parse(read_file(bundle / "rlpol.json"));
    auto input_names = names(metadata, {"inputs", "noise", "parameters"});
    auto output_names = names(metadata, {"outputs"});
    auto sets = read_data_sets(bundle);
    for (const auto& set : sets) {
      check_names(set, set.inputs, input_names, "inputs");
      check_names(set, set.outputs, output_names, "outputs");
    }
    torch::NoGradGuard no_grad;
    std::printf("| %-15s | %-28s | %-10s | %-16s | %-8s |\n", "model", "output", "max |diff|",
                "worst data set", "status");
    bool ok = true;

    torch::jit::Module module = torch::jit::load((bundle / "model.pt").string());
    module.eval();
    ok &= verify_model("model.pt", [&](const std::vector<torch::Tensor>& inputs) {
      return as_tensors(module.forward(std::vector<c10::IValue>(inputs.begin(), inputs.end())));
    }, sets, output_names, atol, rtol);

    fs::path aoti = bundle / "model.aoti.pt2";
    if (fs::exists(aoti)) {
      torch::inductor::AOTIModelPackageLoader loader(aoti.string());
      ok &= verify_model("model.aoti.pt2", [&](const std::vector<torch::Tensor>& inputs) {
        return loader.run(inputs);
      }, sets, output_names, atol, rtol);
    } else {
      std::printf("(no model.aoti.pt2 in the bundle: AOTInductor not checked)\n");
    }
    std::printf("%s: %zu data sets, atol %g, rtol %g\n", ok ? "bundle ok" : "bundle FAILED",
                sets.size(), atol, rtol);
    return ok ? 0 : 1;
  } catch (const std::exception& error) {
    std::cerr << "error: " << error.what() << "\n";
    return 2;
  }
}
