#include "qlc/kernels/safetensors.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <utility>
#include <nlohmann/json.hpp>
#include <sstream>

namespace qlc::kernels {
namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw SafetensorsError(path + ": " + what);
}

// A header larger than this is certainly corrupt (the format's own readers use 100 MB).
constexpr uint64_t kMaxHeaderBytes = 100u << 20;

}  // namespace

int64_t StTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw SafetensorsError("negative dimension " + std::to_string(d));
    if (__builtin_mul_overflow(n, d, &n)) {
      throw SafetensorsError("shape has more than 2^63 elements");
    }
  }
  return n;
}

const StTensor& StFile::at(const std::string& name) const {
  auto it = tensors.find(name);
  if (it != tensors.end()) return it->second;
  std::string have;
  for (const auto& kv : tensors) have += (have.empty() ? "" : ", ") + kv.first;
  throw SafetensorsError(source + ": no tensor '" + name + "' (the file holds: " + have + ")");
}

int64_t safetensors_itemsize(const std::string& dtype) {
  static const std::map<std::string, int64_t> sizes = {
      {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4},
      {"I16", 2}, {"I8", 1},  {"U8", 1},  {"U16", 2},  {"U32", 4}, {"U64", 8}, {"BOOL", 1}};
  auto it = sizes.find(dtype);
  if (it == sizes.end()) throw SafetensorsError("unknown safetensors dtype '" + dtype + "'");
  return it->second;
}

namespace {

// The header as JSON, with a key repeated in one object an error: nlohmann keeps the last copy
// silently, so a file could say two things about one tensor.
nlohmann::json parse_header(const std::string& header, const std::string& path) {
  std::vector<std::set<std::string>> keys;  // one set per open object
  std::string repeated;
  auto callback = [&](int, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    if (event == E::object_start) keys.emplace_back();
    if (event == E::object_end && !keys.empty()) keys.pop_back();
    if (event == E::key && !keys.empty() && !keys.back().insert(parsed.get<std::string>()).second &&
        repeated.empty()) {
      repeated = parsed.get<std::string>();
    }
    return true;
  };
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(header, callback);
  } catch (const nlohmann::json::exception& e) {
    // parse_error, and out_of_range for a number beyond a double (1e400).
    fail(path, std::string("header is not valid JSON: ") + e.what());
  }
  if (!repeated.empty()) fail(path, "header names '" + repeated + "' twice");
  return j;
}

// One tensor's entry: dtype, integral non-negative dimensions, offsets that match the shape.
StTensor parse_entry(const nlohmann::json& v, const std::string& path, const std::string& where,
                     uint64_t* begin, uint64_t* end) {
  if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
    fail(path, where + "needs dtype, shape and data_offsets");
  StTensor t;
  if (!v.at("dtype").is_string()) fail(path, where + "dtype must be a string");
  t.dtype = v.at("dtype").get<std::string>();
  const auto& shape = v.at("shape");
  if (!shape.is_array()) fail(path, where + "shape must be a list of non-negative integers");
  for (const auto& d : shape) {
    // JSON floats ([2.9], [1e30]) are no dimensions: converting them is lossy or undefined.
    if (!d.is_number_integer()) fail(path, where + "shape must be a list of non-negative integers");
    if (!d.is_number_unsigned()) fail(path, where + "negative dimension");
    const uint64_t u = d.get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) fail(path, where + "dimension too large");
    t.shape.push_back(static_cast<int64_t>(u));
  }
  const auto& off = v.at("data_offsets");
  if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
    fail(path, where + "data_offsets must be two non-negative integers");
  *begin = off[0].get<uint64_t>();
  *end = off[1].get<uint64_t>();
  int64_t itemsize = 0;
  int64_t bytes = 0;
  try {
    itemsize = safetensors_itemsize(t.dtype);
    if (__builtin_mul_overflow(t.numel(), itemsize, &bytes)) {
      throw SafetensorsError("shape needs more than 2^63 bytes");
    }
  } catch (const SafetensorsError& e) {
    fail(path, where + e.what());
  }
  const uint64_t expected = static_cast<uint64_t>(bytes);
  if (*end < *begin || *end - *begin != expected)
    fail(path, where + "data_offsets span " + (*end < *begin ? "a negative range" : std::to_string(*end - *begin) + " bytes") +
                   ", shape needs " + std::to_string(expected));
  return t;
}

}  // namespace

StFile read_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open for reading");
  std::ostringstream bytes;
  bytes << in.rdbuf();
  if (in.bad()) fail(path, "read error");
  return parse_safetensors(bytes.str(), path);
}

StFile parse_safetensors(const std::string& bytes, const std::string& path) {
  const uint64_t file_size = bytes.size();
  if (file_size < 8) fail(path, "truncated: " + std::to_string(file_size) + " bytes, need at least 8");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<uint8_t>(bytes[i]);
  if (header_len > kMaxHeaderBytes || header_len > file_size - 8) {
    fail(path, "header length " + std::to_string(header_len) + " exceeds the file (" +
                   std::to_string(file_size) + " bytes): truncated or not a safetensors file");
  }
  const nlohmann::json j = parse_header(bytes.substr(8, header_len), path);
  if (!j.is_object()) fail(path, "header is not a JSON object");
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = file_size - data_start;

  StFile file;
  file.source = path;
  std::vector<std::pair<uint64_t, uint64_t>> spans;  // [begin, end) of every tensor
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) fail(path, "__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) fail(path, "__metadata__ value '" + m.key() + "' is not a string");
        file.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "': ";
    uint64_t begin = 0, end = 0;
    StTensor t = parse_entry(v, path, where, &begin, &end);
    if (end > data_size)
      fail(path, where + "data ends at byte " + std::to_string(end) + " but the file holds " +
                     std::to_string(data_size) + " data bytes (truncated?)");
    t.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(data_start + begin),
                  bytes.begin() + static_cast<std::ptrdiff_t>(data_start + end));
    spans.emplace_back(begin, end);
    file.tensors.emplace(name, std::move(t));
  }
  // As the format's reference requires: the tensors tile the data section, in some order, from
  // byte 0 to its end, with no gap and no overlap.
  std::sort(spans.begin(), spans.end());
  uint64_t covered = 0;
  for (const auto& [begin, end] : spans) {
    if (begin != covered) {
      fail(path, "tensor data " + std::string(begin < covered ? "overlaps" : "leaves a gap") +
                     " at byte " + std::to_string(std::min(begin, covered)) +
                     " (data_offsets must be contiguous and non-overlapping)");
    }
    covered = end;
  }
  if (covered != data_size) {
    fail(path, std::to_string(data_size - covered) + " data bytes after the last tensor");
  }
  return file;
}

void write_safetensors(const std::string& path, const StFile& file) {
  nlohmann::json header = nlohmann::json::object();
  if (!file.metadata.empty()) header["__metadata__"] = file.metadata;
  uint64_t offset = 0;
  for (const auto& [name, t] : file.tensors) {
    int64_t signed_bytes = 0;
    if (__builtin_mul_overflow(t.numel(), safetensors_itemsize(t.dtype), &signed_bytes)) {
      throw SafetensorsError(path + ": tensor '" + name + "' needs more than 2^63 bytes");
    }
    const uint64_t bytes = static_cast<uint64_t>(signed_bytes);
    if (bytes != t.data.size())
      throw SafetensorsError(path + ": tensor '" + name + "' holds " + std::to_string(t.data.size()) +
                             " bytes, its shape needs " + std::to_string(bytes));
    header[name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  while ((text.size() + 8) % 8 != 0) text.push_back(' ');  // keep tensor data 8-byte aligned
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) {
      throw SafetensorsError(path + ": cannot open '" + tmp + "' for writing: " +
                             std::strerror(errno));
    }
    uint64_t len = text.size();
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>((len >> (8 * i)) & 0xFF));
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const auto& kv : file.tensors)
      out.write(reinterpret_cast<const char*>(kv.second.data.data()),
                static_cast<std::streamsize>(kv.second.data.size()));
    if (!out.flush()) {
      const int err = errno;  // the failed write's (the caller may read errno too)
      out.close();
      std::remove(tmp.c_str());
      errno = err;
      throw SafetensorsError(path + ": cannot write '" + tmp + "': " + std::strerror(err));
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw SafetensorsError(path + ": cannot rename the temporary file into place");
  }
}

}  // namespace qlc::kernels
