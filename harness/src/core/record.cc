#include "qlc/harness/record.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

namespace qlc::harness {
namespace {

using nlohmann::json;

constexpr int kSchemaVersion = 1;

// JSON has no NaN/Inf, and nlohmann would write them as null (losing which one it was).
json number(double v) {
  if (std::isfinite(v)) return v;
  if (std::isnan(v)) return "nan";
  return v > 0 ? "inf" : "-inf";
}

json percentiles(const Percentiles& p) {
  return {{"median_ms", number(p.median_ms)}, {"p90_ms", number(p.p90_ms)}};
}

// --- reading, with errors that name the field ----------------------------------------------

[[noreturn]] void bad_field(const std::string& field, const std::string& expected,
                            const json& got) {
  throw std::invalid_argument("record field '" + field + "': expected " + expected + ", got " +
                              (got.is_string() ? "\"" + got.get<std::string>() + "\""
                                               : std::string(got.type_name())));
}

// The member `key` of object `obj`, or nullptr when absent.
const json* member(const json& obj, const char* key) {
  const auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

// A nested object, or nullptr when absent.
const json* object_member(const json& obj, const char* key, const std::string& field) {
  const json* v = member(obj, key);
  if (v && !v->is_object()) bad_field(field, "an object", *v);
  return v;
}

double decode_number(const json& v, const std::string& field) {
  if (v.is_number()) return v.get<double>();
  if (v.is_null()) return std::numeric_limits<double>::quiet_NaN();
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    // Our spelling, and Python's / JavaScript's.
    if (s == "nan" || s == "NaN") return std::numeric_limits<double>::quiet_NaN();
    if (s == "inf" || s == "Infinity") return std::numeric_limits<double>::infinity();
    if (s == "-inf" || s == "-Infinity") return -std::numeric_limits<double>::infinity();
  }
  bad_field(field, "a number (or \"nan\", \"inf\", \"-inf\")", v);
}

void read_double(const json* obj, const char* key, const std::string& field, double& out) {
  if (!obj) return;
  if (const json* v = member(*obj, key)) out = decode_number(*v, field);
}

template <typename T>
void read_integer(const json* obj, const char* key, const std::string& field, T& out) {
  if (!obj) return;
  const json* v = member(*obj, key);
  if (!v) return;
  if (v->is_number_unsigned()) {
    const auto u = v->get<uint64_t>();
    if (u <= static_cast<uint64_t>(std::numeric_limits<T>::max())) {
      out = static_cast<T>(u);
      return;
    }
  } else if (v->is_number_integer()) {
    const auto i = v->get<int64_t>();
    if (i >= static_cast<int64_t>(std::numeric_limits<T>::min()) &&
        i <= static_cast<int64_t>(std::numeric_limits<T>::max())) {
      out = static_cast<T>(i);
      return;
    }
  }
  bad_field(field, "an integer in range", *v);
}

void read_bool(const json* obj, const char* key, const std::string& field, bool& out) {
  if (!obj) return;
  const json* v = member(*obj, key);
  if (!v) return;
  if (!v->is_boolean()) bad_field(field, "true or false", *v);
  out = v->get<bool>();
}

void read_string(const json* obj, const char* key, const std::string& field, std::string& out) {
  if (!obj) return;
  const json* v = member(*obj, key);
  if (!v) return;
  if (!v->is_string()) bad_field(field, "a string", *v);
  out = v->get<std::string>();
}

void read_percentiles(const json* timings, const char* key, Percentiles& out) {
  if (!timings) return;
  const std::string field = std::string("timings.") + key;
  const json* p = object_member(*timings, key, field);
  read_double(p, "median_ms", field + ".median_ms", out.median_ms);
  read_double(p, "p90_ms", field + ".p90_ms", out.p90_ms);
}

// --- files -------------------------------------------------------------------------------------

[[noreturn]] void io_error(const std::string& path, const std::string& what) {
  throw std::runtime_error(path + ": " + what + ": " + std::strerror(errno));
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

void write_all(int fd, const std::string& data, const std::string& path) {
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      io_error(path, "cannot write record");
    }
    done += static_cast<std::size_t>(n);
  }
}

std::string read_all(int fd, off_t size, const std::string& path) {
  std::string data(static_cast<std::size_t>(size), '\0');
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::pread(fd, data.data() + done, data.size() - done, static_cast<off_t>(done));
    if (n < 0) {
      if (errno == EINTR) continue;
      io_error(path, "cannot read records file");
    }
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  data.resize(done);
  return data;
}

// A file whose last line has no newline was cut short by a crash mid-write (every record is
// written with its newline in one call). Remove the fragment so the next record starts a line of
// its own; if the fragment is complete JSON, only its newline was lost: add it instead.
void repair_tail(int fd, off_t size, const std::string& path) {
  char last = '\n';
  if (::pread(fd, &last, 1, size - 1) != 1) io_error(path, "cannot read records file");
  if (last == '\n') return;
  const std::string data = read_all(fd, size, path);
  const auto newline = data.rfind('\n');
  const std::size_t tail_start = newline == std::string::npos ? 0 : newline + 1;
  if (json::accept(data.substr(tail_start))) {
    write_all(fd, "\n", path);
  } else if (::ftruncate(fd, static_cast<off_t>(tail_start)) != 0) {
    io_error(path, "cannot remove the cut-short last line");
  }
}

// Makes a newly created file's directory entry durable too. Best effort: some file systems
// refuse fsync on directories, and the record itself is already on disk.
void sync_directory_of(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  (void)::fsync(fd);
  ::close(fd);
}

bool is_blank(const std::string& line) {
  return line.find_first_not_of(" \t\r") == std::string::npos;
}

// nlohmann's messages start with "[json.exception.parse_error.101] "; the rest is the useful part.
std::string without_exception_tag(const std::string& what) {
  const auto end = what.find("] ");
  return what.compare(0, 1, "[") == 0 && end != std::string::npos ? what.substr(end + 2) : what;
}

}  // namespace

nlohmann::json Record::to_json() const {
  json losses_json = json::array();
  for (double l : losses) losses_json.push_back(number(l));
  json j = {
      {"schema", kSchemaVersion},
      {"case", case_id},
      {"outcome", to_string(outcome)},
      {"phase", to_string(phase)},
      {"step", step},
      {"message", message},
      {"skip_reason", skip_reason},
      {"losses", losses_json},
      {"timings",
       {{"load_ms", number(load_ms)},
        {"forward", percentiles(forward)},
        {"backward", percentiles(backward)},
        {"optimizer", percentiles(optimizer)},
        {"step", percentiles(step_time)},
        {"tokens_per_s", number(tokens_per_s)},
        {"wall_ms", number(wall_ms)},
        {"overhead_ms", number(overhead_ms)}}},
      {"memory",
       {{"peak_bytes", peak_memory_bytes},
        {"base_weight_bits_per_param", number(base_weight_bits_per_param)},
        {"theory_bits_per_param", number(theory_bits_per_param)}}},
      {"worker", {{"exit_code", exit_code}, {"signal", signal}, {"output", worker_output}}},
      {"environment", environment_id},
      {"model", model},
      {"lora_rank", lora_rank},
  };
  // How the timings were taken is written only when known (jobs > 0): a record read from an
  // older run must not come back claiming its timings were not shared.
  if (jobs > 0) {
    j["parallel"] = {{"jobs", jobs}, {"threads", threads}};
    j["timings"]["shared"] = timings_shared;
    j["timings"]["serial"] = timings_serial;
  }
  if (prediction) {
    j["prediction"] = {{"outcome", to_string(prediction->outcome)}, {"rule", prediction->rule},
                       {"why", prediction->why}, {"fix", prediction->fix}};
  }
  if (fix_check) {
    j["fix_check"] = {{"rule", fix_check->rule}, {"case", fix_check->case_id},
                      {"outcome", to_string(fix_check->outcome)},
                      {"verified", fix_check->verified()}, {"message", fix_check->message}};
  }
  return j;
}

Record Record::from_json(const nlohmann::json& j) {
  if (!j.is_object()) {
    throw std::invalid_argument(std::string("record: expected a JSON object, got ") +
                                j.type_name());
  }
  if (const json* schema = member(j, "schema")) {
    if (!schema->is_number_integer() || schema->get<int64_t>() != kSchemaVersion) {
      bad_field("schema", "version " + std::to_string(kSchemaVersion), *schema);
    }
  }
  Record r;
  const json* case_json = member(j, "case");
  if (!case_json) throw std::invalid_argument("record field 'case' is missing");
  if (!case_json->is_string() || case_json->get_ref<const std::string&>().empty()) {
    bad_field("case", "a case id", *case_json);
  }
  r.case_id = case_json->get<std::string>();

  const json* outcome_json = member(j, "outcome");
  if (!outcome_json) throw std::invalid_argument("record field 'outcome' is missing");
  if (!outcome_json->is_string()) bad_field("outcome", "a string", *outcome_json);
  try {
    r.outcome = outcome_from_string(outcome_json->get<std::string>());
    std::string phase = to_string(r.phase);
    read_string(&j, "phase", "phase", phase);
    r.phase = phase_from_string(phase);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("record: ") + e.what());
  }

  read_integer(&j, "step", "step", r.step);
  read_string(&j, "message", "message", r.message);
  read_string(&j, "skip_reason", "skip_reason", r.skip_reason);
  if (const json* losses = member(j, "losses")) {
    if (!losses->is_array()) bad_field("losses", "an array", *losses);
    for (std::size_t i = 0; i < losses->size(); ++i) {
      r.losses.push_back(decode_number((*losses)[i], "losses[" + std::to_string(i) + "]"));
    }
  }

  const json* timings = object_member(j, "timings", "timings");
  read_double(timings, "load_ms", "timings.load_ms", r.load_ms);
  read_percentiles(timings, "forward", r.forward);
  read_percentiles(timings, "backward", r.backward);
  read_percentiles(timings, "optimizer", r.optimizer);
  read_percentiles(timings, "step", r.step_time);
  read_double(timings, "tokens_per_s", "timings.tokens_per_s", r.tokens_per_s);
  read_double(timings, "wall_ms", "timings.wall_ms", r.wall_ms);
  read_double(timings, "overhead_ms", "timings.overhead_ms", r.overhead_ms);
  read_bool(timings, "shared", "timings.shared", r.timings_shared);
  read_bool(timings, "serial", "timings.serial", r.timings_serial);
  const json* parallel = object_member(j, "parallel", "parallel");
  read_integer(parallel, "jobs", "parallel.jobs", r.jobs);
  read_integer(parallel, "threads", "parallel.threads", r.threads);

  const json* memory = object_member(j, "memory", "memory");
  read_integer(memory, "peak_bytes", "memory.peak_bytes", r.peak_memory_bytes);
  read_double(memory, "base_weight_bits_per_param", "memory.base_weight_bits_per_param",
              r.base_weight_bits_per_param);
  read_double(memory, "theory_bits_per_param", "memory.theory_bits_per_param",
              r.theory_bits_per_param);

  const json* worker = object_member(j, "worker", "worker");
  read_integer(worker, "exit_code", "worker.exit_code", r.exit_code);
  read_integer(worker, "signal", "worker.signal", r.signal);
  read_string(worker, "output", "worker.output", r.worker_output);

  read_string(&j, "environment", "environment", r.environment_id);
  read_string(&j, "model", "model", r.model);
  read_integer(&j, "lora_rank", "lora_rank", r.lora_rank);

  auto read_outcome = [](const json* parent, const char* key, const std::string& field) {
    std::string text;
    read_string(parent, key, field, text);
    try {
      return outcome_from_string(text);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("record field '" + field + "': " + e.what());
    }
  };
  if (const json* p = object_member(j, "prediction", "prediction")) {
    Prediction pred;
    pred.outcome = read_outcome(p, "outcome", "prediction.outcome");
    read_string(p, "rule", "prediction.rule", pred.rule);
    read_string(p, "why", "prediction.why", pred.why);
    read_string(p, "fix", "prediction.fix", pred.fix);
    r.prediction = pred;
  }
  if (const json* f = object_member(j, "fix_check", "fix_check")) {
    FixCheck check;
    read_string(f, "rule", "fix_check.rule", check.rule);
    read_string(f, "case", "fix_check.case", check.case_id);
    check.outcome = read_outcome(f, "outcome", "fix_check.outcome");
    read_string(f, "message", "fix_check.message", check.message);
    r.fix_check = check;
  }
  return r;
}

void append_record(const std::string& path, const Record& record) {
  // Raw error text and worker output may hold any bytes; JSON needs UTF-8.
  const std::string line =
      record.to_json().dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  const Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (fd.get() < 0) io_error(path, "cannot open records file");
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) io_error(path, "cannot stat records file");
  if (st.st_size > 0) repair_tail(fd.get(), st.st_size, path);
  write_all(fd.get(), line, path);
  if (::fsync(fd.get()) != 0) io_error(path, "cannot flush records file to disk");
  if (st.st_size == 0) sync_directory_of(path);
}

std::vector<Record> read_records(const std::string& path, bool* truncated_tail) {
  if (truncated_tail) *truncated_tail = false;
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    throw RecordError(path + ": cannot read records file: it is a directory");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw RecordError(path + ": cannot read records file: " + std::strerror(errno));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return parse_records(buffer.str(), path, truncated_tail);
}

std::vector<Record> parse_records(const std::string& data, const std::string& path,
                                  bool* truncated_tail) {
  if (truncated_tail) *truncated_tail = false;
  std::vector<Record> records;
  std::size_t start = 0;
  for (int line_no = 1; start < data.size(); ++line_no) {
    const auto newline = data.find('\n', start);
    const bool unterminated = newline == std::string::npos;
    const std::string line = data.substr(start, unterminated ? std::string::npos : newline - start);
    start = unterminated ? data.size() : newline + 1;
    if (is_blank(line)) continue;

    const std::string where = path + ":" + std::to_string(line_no) + ": ";
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception& e) {
      // parse_error, or out_of_range for a number beyond a double (1e400): either way, only the
      // very end of the file can be a write that a crash cut short (it may end inside a number).
      if (unterminated) {
        if (truncated_tail) *truncated_tail = true;
        break;
      }
      throw RecordError(where + "malformed record (not JSON): " + without_exception_tag(e.what()));
    }
    try {
      records.push_back(Record::from_json(j));
    } catch (const std::invalid_argument& e) {
      throw RecordError(where + "bad record: " + e.what());
    } catch (const json::exception& e) {
      throw RecordError(where + "bad record: " + without_exception_tag(e.what()));
    }
  }
  return records;
}

}  // namespace qlc::harness
