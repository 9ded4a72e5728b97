// Minimal safetensors reader and writer (8-byte little-endian header length, JSON header, raw
// little-endian tensor bytes). Every malformed file is rejected with an error naming the file and
// the problem; files are written atomically (temporary file, then rename).
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace qlc::kernels {

class SafetensorsError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct StTensor {
  std::string dtype;           // safetensors spelling: F32, F16, BF16, U8, I8, I32, I64, F64, BOOL
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;   // raw little-endian bytes, size == numel * itemsize

  int64_t numel() const;  // throws SafetensorsError on a negative dimension or int64 overflow
  template <class T>
  const T* as() const { return reinterpret_cast<const T*>(data.data()); }
};

struct StFile {
  std::map<std::string, StTensor> tensors;
  std::map<std::string, std::string> metadata;  // the "__metadata__" object (string values)

  // The named tensor; throws SafetensorsError listing what the file holds if it is missing.
  const StTensor& at(const std::string& name) const;
  std::string source;  // path it was read from, for error messages
};

// Bytes per element of a safetensors dtype; throws SafetensorsError for an unknown one.
int64_t safetensors_itemsize(const std::string& dtype);

// Rejected, each as SafetensorsError "PATH: reason": a header that is not one JSON object (a
// number beyond a double included), a key repeated in one object, dimensions that are not
// non-negative integers, a shape whose elements or bytes overflow int64, data_offsets that do not
// match the shape, and tensors that do not tile the data section (from byte 0 to its end, no gap,
// no overlap: the format's reference).
StFile read_safetensors(const std::string& path);
// The same from the file's bytes in memory; `path` only names it in errors (the fuzz target).
StFile parse_safetensors(const std::string& bytes, const std::string& path);
void write_safetensors(const std::string& path, const StFile& file);

// Helpers to build tensors from typed buffers.
template <class T>
StTensor make_st_tensor(const std::string& dtype, std::vector<int64_t> shape, const T* values,
                        int64_t count) {
  StTensor t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  const auto* bytes = reinterpret_cast<const uint8_t*>(values);
  t.data.assign(bytes, bytes + count * static_cast<int64_t>(sizeof(T)));
  return t;
}

}  // namespace qlc::kernels
