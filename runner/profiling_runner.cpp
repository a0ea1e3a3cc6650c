/*
 * profiling_runner: load an ExecuTorch .pte, run one method N times, report latency.
 *
 * A superset of ExecuTorch's executor_runner command line:
 *
 *   profiling_runner --model_path model.pte --num_executions 20 --warmup 3 \
 *       --cpu_threads 1 --timing_json timing.json [--etdump_path trace.etdump]
 *
 * Timing mode (no --etdump_path) attaches no event tracer, so the latencies in
 * --timing_json are the model's own cost. Trace mode attaches an ETDumpGen and
 * writes one Method::execute event per measured execution (warm-up runs are
 * dropped from the trace).
 */

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <executorch/devtools/etdump/etdump_flatcc.h>
#include <executorch/extension/data_loader/file_data_loader.h>
#include <executorch/extension/memory_allocator/malloc_memory_allocator.h>
#include <executorch/runtime/executor/method.h>
#include <executorch/runtime/executor/program.h>
#include <executorch/runtime/platform/runtime.h>

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#include <sys/prctl.h>
#elif defined(__aarch64__) && defined(__APPLE__)
#include <sys/sysctl.h>
#endif

// The wheel ships the thread pool library but not its header; these two
// declarations match the exported symbols of libexecutorch_threadpool.
namespace executorch::extension::threadpool {
class ThreadPool {
 public:
  bool _unsafe_reset_threadpool(uint32_t num_threads);
  size_t get_thread_count() const;
};
ThreadPool* get_threadpool();
} // namespace executorch::extension::threadpool
namespace executorch::extension::cpuinfo {
uint32_t get_num_performant_cores();
} // namespace executorch::extension::cpuinfo

using executorch::aten::ScalarType;
using executorch::aten::Tensor;
using executorch::aten::TensorImpl;
using executorch::etdump::ETDumpGen;
using executorch::etdump::ETDumpResult;
using executorch::extension::FileDataLoader;
using executorch::extension::MallocMemoryAllocator;
using executorch::runtime::Error;
using executorch::runtime::EValue;
using executorch::runtime::HierarchicalAllocator;
using executorch::runtime::MemoryManager;
using executorch::runtime::Method;
using executorch::runtime::MethodMeta;
using executorch::runtime::Program;
using executorch::runtime::Span;
using executorch::runtime::TensorInfo;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::string model_path;
  std::string method_name = "forward";
  std::string etdump_path;
  std::string timing_json;
  std::string proc_maps_path;
  std::vector<std::string> input_files;
  int num_executions = 1;
  int warmup = 0;
  int cpu_threads = -1;
};

const char kUsage[] =
    "usage: profiling_runner --model_path FILE.pte [options]\n"
    "\n"
    "  --model_path PATH      ExecuTorch program (.pte) to run (required)\n"
    "  --method_name NAME     method to run (default: forward)\n"
    "  --num_executions N     measured executions (default: 1)\n"
    "  --warmup N             executions before measuring, not recorded (default: 0)\n"
    "  --cpu_threads N        XNNPACK/threadpool threads; -1 = performance cores (default: -1)\n"
    "  --timing_json PATH     write per-execution latency (ms) and load time as JSON\n"
    "  --etdump_path PATH     attach an ETDump tracer and write the trace here\n"
    "  --inputs A.bin,B.bin   raw input tensors, one file per input (default: a fixed\n"
    "                         pattern shaped by the method's metadata)\n"
    "  --proc_maps_path PATH  at exit, copy /proc/self/maps here (Linux, Android): where\n"
    "                         each library was loaded, to map code addresses to symbols\n"
    "  --help                 show this help\n";

[[noreturn]] void fail(const std::string& message) {
  std::fprintf(stderr, "error: %s\n", message.c_str());
  std::exit(1);
}

std::string error_text(Error err) {
  char text[32];
  std::snprintf(text, sizeof(text), "error 0x%x", static_cast<unsigned>(err));
  return text;
}

int parse_int(const std::string& flag, const char* value) {
  char* end = nullptr;
  long parsed = std::strtol(value, &end, 10);
  if (end == value || *end != '\0') {
    fail(flag + " expects an integer, got '" + value + "'");
  }
  return static_cast<int>(parsed);
}

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> parts;
  std::stringstream stream(text);
  for (std::string part; std::getline(stream, part, ',');) {
    if (!part.empty()) {
      parts.push_back(part);
    }
  }
  return parts;
}

Options parse_args(int argc, char** argv) {
  Options opts;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    // Accept both "--flag value" and "--flag=value", as gflags does.
    std::string value_text;
    const char* value = nullptr;
    size_t eq = arg.find('=');
    if (eq != std::string::npos) {
      value_text = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      value = value_text.c_str();
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      fail(arg + " needs a value (see --help)");
    }
    if (arg == "--model_path") {
      opts.model_path = value;
    } else if (arg == "--method_name") {
      opts.method_name = value;
    } else if (arg == "--etdump_path") {
      opts.etdump_path = value;
    } else if (arg == "--timing_json") {
      opts.timing_json = value;
    } else if (arg == "--proc_maps_path") {
      opts.proc_maps_path = value;
    } else if (arg == "--inputs") {
      opts.input_files = split_commas(value);
    } else if (arg == "--num_executions") {
      opts.num_executions = parse_int(arg, value);
    } else if (arg == "--warmup") {
      opts.warmup = parse_int(arg, value);
    } else if (arg == "--cpu_threads") {
      opts.cpu_threads = parse_int(arg, value);
    } else {
      fail("unknown option " + arg + " (see --help)");
    }
  }
  if (opts.model_path.empty()) {
    fail("--model_path is required (see --help)");
  }
  if (opts.num_executions < 1 || opts.warmup < 0) {
    fail("--num_executions must be >= 1 and --warmup >= 0");
  }
  return opts;
}

// A .pte is a flatbuffer whose file identifier ("ET" + 2 digits) sits at bytes 4..7.
void check_model_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    fail("model file not found: " + path + " (export one with scripts/export_model.py)");
  }
  char header[8] = {};
  file.read(header, sizeof(header));
  if (file.gcount() < 8 || header[4] != 'E' || header[5] != 'T') {
    fail(path + " is not an ExecuTorch program (.pte); re-export it with scripts/export_model.py");
  }
}

uint32_t configure_threads(int requested) {
  uint32_t threads = requested > 0
      ? static_cast<uint32_t>(requested)
      : executorch::extension::cpuinfo::get_num_performant_cores();
  auto* pool = executorch::extension::threadpool::get_threadpool();
  if (pool == nullptr) {
    return 1;
  }
  pool->_unsafe_reset_threadpool(std::max<uint32_t>(threads, 1));
  return static_cast<uint32_t>(pool->get_thread_count());
}

// Deterministic values in [-1, 1) so runs are repeatable and never denormal.
float pattern_value(size_t index) {
  return static_cast<float>(index % 251) / 125.5f - 1.0f;
}

template <typename T>
void fill_pattern(void* data, size_t count) {
  T* typed = static_cast<T*>(data);
  for (size_t i = 0; i < count; ++i) {
    typed[i] = static_cast<T>(pattern_value(i));
  }
}

void fill_input(ScalarType type, void* data, size_t nbytes) {
  switch (type) {
    case ScalarType::Float:
      return fill_pattern<float>(data, nbytes / sizeof(float));
    case ScalarType::Double:
      return fill_pattern<double>(data, nbytes / sizeof(double));
    case ScalarType::Half:
      return fill_pattern<executorch::aten::Half>(data, nbytes / 2);
    case ScalarType::BFloat16:
      return fill_pattern<executorch::aten::BFloat16>(data, nbytes / 2);
    case ScalarType::Long: {
      auto* typed = static_cast<int64_t*>(data);
      for (size_t i = 0; i < nbytes / 8; ++i) typed[i] = static_cast<int64_t>(i % 7);
      return;
    }
    case ScalarType::Int: {
      auto* typed = static_cast<int32_t*>(data);
      for (size_t i = 0; i < nbytes / 4; ++i) typed[i] = static_cast<int32_t>(i % 7);
      return;
    }
    case ScalarType::Bool: {
      auto* typed = static_cast<uint8_t*>(data);
      for (size_t i = 0; i < nbytes; ++i) typed[i] = static_cast<uint8_t>(i % 2);
      return;
    }
    default: {
      auto* bytes = static_cast<uint8_t*>(data);
      for (size_t i = 0; i < nbytes; ++i) bytes[i] = static_cast<uint8_t>(i % 17);
    }
  }
}

void read_input_file(const std::string& path, void* data, size_t nbytes) {
  std::ifstream file(path, std::ios::binary | std::ios::ate);
  if (!file) {
    fail("input file not found: " + path);
  }
  if (static_cast<size_t>(file.tellg()) != nbytes) {
    fail("input file " + path + " has " + std::to_string(file.tellg()) +
         " bytes, the method expects " + std::to_string(nbytes));
  }
  file.seekg(0);
  file.read(static_cast<char*>(data), static_cast<std::streamsize>(nbytes));
}

// Owns the storage behind each input tensor for the life of the method.
struct InputTensors {
  std::vector<std::vector<uint8_t>> data;
  std::vector<std::vector<executorch::aten::SizesType>> sizes;
  std::vector<std::vector<executorch::aten::DimOrderType>> dim_orders;
  std::vector<std::unique_ptr<TensorImpl>> impls;
};

void set_inputs(Method& method, const MethodMeta& meta, const Options& opts, InputTensors& inputs) {
  size_t count = meta.num_inputs();
  if (!opts.input_files.empty() && opts.input_files.size() != count) {
    fail("--inputs lists " + std::to_string(opts.input_files.size()) + " files, the method takes " +
         std::to_string(count) + " inputs");
  }
  for (size_t i = 0; i < count; ++i) {
    auto info = meta.input_tensor_meta(i);
    if (!info.ok()) {
      fail("input " + std::to_string(i) + " is not a tensor; this runner feeds tensors only");
    }
    auto& bytes = inputs.data.emplace_back(info->nbytes());
    auto& sizes = inputs.sizes.emplace_back(info->sizes().begin(), info->sizes().end());
    auto& order = inputs.dim_orders.emplace_back(info->dim_order().begin(), info->dim_order().end());
    if (opts.input_files.empty()) {
      fill_input(info->scalar_type(), bytes.data(), bytes.size());
    } else {
      read_input_file(opts.input_files[i], bytes.data(), bytes.size());
    }
    auto& impl = inputs.impls.emplace_back(std::make_unique<TensorImpl>(
        info->scalar_type(), static_cast<ssize_t>(sizes.size()), sizes.data(), bytes.data(),
        order.data()));
    Error err = method.set_input(EValue(Tensor(impl.get())), i);
    if (err != Error::Ok) {
      fail("could not set input " + std::to_string(i) + " (" + error_text(err) + ")");
    }
  }
}

double ms_between(Clock::time_point start, Clock::time_point end) {
  return std::chrono::duration<double, std::milli>(end - start).count();
}

double median_of(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  size_t mid = values.size() / 2;
  return values.size() % 2 ? values[mid] : 0.5 * (values[mid - 1] + values[mid]);
}

// The SME features this process sees, read through the calls cpuinfo makes (so after any
// feature mask preloaded from the runner's folder): what XNNPACK chose its kernels from.
struct CpuFeatures {
  bool sme = false;
  bool sme2 = false;
  int sme_vector_length_bytes = 0; // 0: none reported
  const char* read_with = "none (not arm64)";
};

CpuFeatures read_cpu_features() {
  CpuFeatures seen;
#if defined(__aarch64__) && defined(__linux__)
  constexpr unsigned long kHwcap2Sme = 1UL << 23;
  constexpr unsigned long kHwcap2Sme2 = 1UL << 37;
  constexpr int kPrSmeGetVl = 64;
  constexpr int kPrSmeVlLenMask = 0xffff;
  unsigned long hwcap2 = getauxval(AT_HWCAP2);
  seen.sme = (hwcap2 & kHwcap2Sme) != 0;
  seen.sme2 = (hwcap2 & kHwcap2Sme2) != 0;
  int vl = prctl(kPrSmeGetVl, 0, 0, 0, 0);
  seen.sme_vector_length_bytes = vl > 0 ? (vl & kPrSmeVlLenMask) : 0;
  seen.read_with = "getauxval+prctl";
#elif defined(__aarch64__) && defined(__APPLE__)
  auto read = [](const char* name) {
    int64_t value = 0; // room for either width; a 4-byte answer fills the low half
    size_t size = sizeof(value);
    return sysctlbyname(name, &value, &size, nullptr, 0) == 0 ? static_cast<int>(value) : 0;
  };
  seen.sme = read("hw.optional.arm.FEAT_SME") != 0;
  seen.sme2 = read("hw.optional.arm.FEAT_SME2") != 0;
  seen.sme_vector_length_bytes = read("hw.optional.arm.sme_max_svl_b");
  seen.read_with = "sysctlbyname";
#endif
  return seen;
}

std::string cpu_features_json(const CpuFeatures& seen) {
  std::string vl = seen.sme_vector_length_bytes > 0 ? std::to_string(seen.sme_vector_length_bytes) : "null";
  return std::string("{\"sme\": ") + (seen.sme ? "true" : "false") + ", \"sme2\": " +
      (seen.sme2 ? "true" : "false") + ", \"sme_vector_length_bytes\": " + vl + ", \"read_with\": \"" +
      seen.read_with + "\"}";
}

std::string json_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

void write_timing_json(const Options& opts, uint32_t threads, double program_ms, double method_ms,
                       const std::vector<double>& latencies, const CpuFeatures& seen) {
  std::ofstream out(opts.timing_json);
  if (!out) {
    fail("cannot write " + opts.timing_json);
  }
  char buffer[64];
  out << "{\n  \"schema_version\": 1,\n"
      << "  \"model_path\": \"" << json_escape(opts.model_path) << "\",\n"
      << "  \"method\": \"" << json_escape(opts.method_name) << "\",\n"
      << "  \"num_executions\": " << latencies.size() << ",\n"
      << "  \"warmup\": " << opts.warmup << ",\n"
      << "  \"cpu_threads\": " << threads << ",\n"
      << "  \"etdump\": " << (opts.etdump_path.empty() ? "false" : "true") << ",\n"
      << "  \"cpu_features_seen\": " << cpu_features_json(seen) << ",\n";
  std::snprintf(buffer, sizeof(buffer), "%.6f", program_ms);
  out << "  \"load_ms\": {\"program\": " << buffer;
  std::snprintf(buffer, sizeof(buffer), "%.6f", method_ms);
  out << ", \"method\": " << buffer << "},\n  \"latencies_ms\": [";
  for (size_t i = 0; i < latencies.size(); ++i) {
    std::snprintf(buffer, sizeof(buffer), "%s%.6f", i ? ", " : "", latencies[i]);
    out << buffer;
  }
  std::snprintf(buffer, sizeof(buffer), "%.6f", median_of(latencies));
  out << "],\n  \"summary\": {\"median_ms\": " << buffer;
  std::snprintf(buffer, sizeof(buffer), "%.6f", *std::min_element(latencies.begin(), latencies.end()));
  out << ", \"min_ms\": " << buffer;
  std::snprintf(buffer, sizeof(buffer), "%.6f", *std::max_element(latencies.begin(), latencies.end()));
  out << ", \"max_ms\": " << buffer << "}\n}\n";
  out.close();
  if (!out) {
    fail("cannot write " + opts.timing_json + ": " + std::strerror(errno));
  }
}

void write_etdump(ETDumpGen& tracer, const std::string& path) {
  ETDumpResult result = tracer.get_etdump_data();
  if (result.buf == nullptr || result.size == 0) {
    fail("the tracer recorded nothing; was the runtime built with the event tracer?");
  }
  std::ofstream out(path, std::ios::binary);
  out.write(static_cast<const char*>(result.buf), static_cast<std::streamsize>(result.size));
  std::free(result.buf);
  out.close();  // a full disk shows up when the buffer is flushed
  if (!out) {
    fail("cannot write " + path + ": " + std::strerror(errno));
  }
}

// Libraries load at a different address in every process (and under qemu-user the
// guest sees its own map), so code addresses mean nothing without this process's map.
void copy_proc_maps(const std::string& path) {
  std::ifstream maps("/proc/self/maps");
  if (!maps) {
    fail("--proc_maps_path: /proc/self/maps is not readable (Linux and Android only)");
  }
  std::ofstream out(path);
  out << maps.rdbuf();
  if (!out.flush()) {
    fail("cannot write " + path);
  }
}

} // namespace

int main(int argc, char** argv) {
  Options opts = parse_args(argc, argv);
  executorch::runtime::runtime_init();
  check_model_file(opts.model_path);
  uint32_t threads = configure_threads(opts.cpu_threads);

  auto load_start = Clock::now();
  auto loader = FileDataLoader::from(opts.model_path.c_str());
  if (!loader.ok()) {
    fail("cannot open " + opts.model_path);
  }
  // InternalConsistency checks the flatbuffer's offsets and sizes before anything reads them,
  // so a damaged file is an error here instead of a crash later.
  auto program = Program::load(&loader.get(), Program::Verification::InternalConsistency);
  if (!program.ok()) {
    fail(opts.model_path + " is not a valid ExecuTorch program (" + error_text(program.error()) +
         "): the file is damaged or not a .pte; re-export it with scripts/export_model.py");
  }
  double program_ms = ms_between(load_start, Clock::now());

  auto meta = program->method_meta(opts.method_name.c_str());
  if (!meta.ok()) {
    std::string names;
    for (size_t i = 0; i < program->num_methods(); ++i) {
      names += std::string(i ? ", " : "") + program->get_method_name(i).get();
    }
    fail("method '" + opts.method_name + "' not found in " + opts.model_path + " (it has: " + names + ")");
  }

  // Memory-planned buffers come from the program; everything else grows on the heap.
  std::vector<std::vector<uint8_t>> planned_buffers;
  std::vector<Span<uint8_t>> planned_spans;
  for (size_t i = 0; i < meta->num_memory_planned_buffers(); ++i) {
    planned_buffers.emplace_back(static_cast<size_t>(meta->memory_planned_buffer_size(i).get()));
    planned_spans.emplace_back(planned_buffers.back().data(), planned_buffers.back().size());
  }
  HierarchicalAllocator planned_memory({planned_spans.data(), planned_spans.size()});
  MallocMemoryAllocator method_allocator;
  MallocMemoryAllocator temp_allocator;
  MemoryManager memory_manager(&method_allocator, &planned_memory, &temp_allocator);

  std::unique_ptr<ETDumpGen> tracer;
  if (!opts.etdump_path.empty()) {
    tracer = std::make_unique<ETDumpGen>();
  }
  auto method_start = Clock::now();
  auto method = program->load_method(opts.method_name.c_str(), &memory_manager, tracer.get());
  if (!method.ok()) {
    // NotFound is also what a damaged .pte gives when its data segments cannot be located.
    Error err = method.error();
    if (err == Error::OperatorMissing) {
      fail("cannot load method '" + opts.method_name + "' (" + error_text(err) +
           "): an operator or backend the model needs is missing from this runner; see the log above");
    }
    if (err == Error::NotFound) {
      fail("cannot load method '" + opts.method_name + "' (" + error_text(err) +
           "): an operator or backend the model needs is missing from this runner, or the .pte is damaged "
           "(re-export it with scripts/export_model.py); see the log above");
    }
    fail("cannot load method '" + opts.method_name + "' (" + error_text(err) +
         "): the program's data is damaged or not usable by this runtime; re-export it with "
         "scripts/export_model.py; see the log above");
  }
  double method_ms = ms_between(method_start, Clock::now());

  InputTensors inputs;
  set_inputs(*method, *meta, opts, inputs);

  for (int i = 0; i < opts.warmup; ++i) {
    if (method->execute() != Error::Ok) {
      fail("execute failed during warm-up run " + std::to_string(i));
    }
  }
  if (tracer) {
    // Warm-up runs are not measurements: start the trace afresh.
    tracer->reset();
  }

  std::vector<double> latencies;
  latencies.reserve(opts.num_executions);
  for (int i = 0; i < opts.num_executions; ++i) {
    auto start = Clock::now();
    Error err = method->execute();
    auto end = Clock::now();
    if (err != Error::Ok) {
      fail("execute failed on run " + std::to_string(i) + " (" + error_text(err) + ")");
    }
    latencies.push_back(ms_between(start, end));
  }

  if (tracer) {
    write_etdump(*tracer, opts.etdump_path);
  }
  if (!opts.timing_json.empty()) {
    write_timing_json(opts, threads, program_ms, method_ms, latencies, read_cpu_features());
  }
  if (!opts.proc_maps_path.empty()) {
    copy_proc_maps(opts.proc_maps_path);
  }
  std::printf("%s: %d runs, %u threads%s: median %.4f ms, min %.4f ms, max %.4f ms\n",
              opts.model_path.c_str(), opts.num_executions, threads, tracer ? " (traced)" : "",
              median_of(latencies), *std::min_element(latencies.begin(), latencies.end()),
              *std::max_element(latencies.begin(), latencies.end()));
  return 0;
}
