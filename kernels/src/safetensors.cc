#include "qlc/kernels/safetensors.h"

#include <cstdio>
#include <cerrno>
#include <cstring>
#include <fstream>
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
  for (int64_t d : shape) n *= d;
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

StFile read_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open for reading");
  in.seekg(0, std::ios::end);
  const uint64_t file_size = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  if (file_size < 8) fail(path, "truncated: " + std::to_string(file_size) + " bytes, need at least 8");
  uint8_t len_bytes[8];
  in.read(reinterpret_cast<char*>(len_bytes), 8);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  if (header_len > kMaxHeaderBytes || header_len > file_size - 8) {
    fail(path, "header length " + std::to_string(header_len) + " exceeds the file (" +
                   std::to_string(file_size) + " bytes): truncated or not a safetensors file");
  }
  std::string header(header_len, '\0');
  in.read(header.data(), static_cast<std::streamsize>(header_len));
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(header);
  } catch (const nlohmann::json::parse_error& e) {
    fail(path, std::string("header is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) fail(path, "header is not a JSON object");
  const uint64_t data_size = file_size - 8 - header_len;
  std::vector<uint8_t> data(data_size);
  in.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(data_size));
  if (!in) fail(path, "could not read the tensor data");

  StFile file;
  file.source = path;
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
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      fail(path, where + "needs dtype, shape and data_offsets");
    StTensor t;
    try {
      t.dtype = v.at("dtype").get<std::string>();
      t.shape = v.at("shape").get<std::vector<int64_t>>();
    } catch (const nlohmann::json::exception& e) {
      fail(path, where + e.what());
    }
    const auto& off = v.at("data_offsets");
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      fail(path, where + "data_offsets must be two non-negative integers");
    const uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    for (int64_t d : t.shape)
      if (d < 0) fail(path, where + "negative dimension");
    int64_t itemsize = 0;
    try {
      itemsize = safetensors_itemsize(t.dtype);
    } catch (const SafetensorsError& e) {
      fail(path, where + e.what());
    }
    const uint64_t expected = static_cast<uint64_t>(t.numel() * itemsize);
    if (end < begin || end - begin != expected)
      fail(path, where + "data_offsets span " + std::to_string(end - begin) + " bytes, shape needs " +
                     std::to_string(expected));
    if (end > data_size)
      fail(path, where + "data ends at byte " + std::to_string(end) + " but the file holds " +
                     std::to_string(data_size) + " data bytes (truncated?)");
    t.data.assign(data.begin() + static_cast<std::ptrdiff_t>(begin),
                  data.begin() + static_cast<std::ptrdiff_t>(end));
    file.tensors.emplace(name, std::move(t));
  }
  return file;
}

void write_safetensors(const std::string& path, const StFile& file) {
  nlohmann::json header = nlohmann::json::object();
  if (!file.metadata.empty()) header["__metadata__"] = file.metadata;
  uint64_t offset = 0;
  for (const auto& [name, t] : file.tensors) {
    const uint64_t bytes = static_cast<uint64_t>(t.numel() * safetensors_itemsize(t.dtype));
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
