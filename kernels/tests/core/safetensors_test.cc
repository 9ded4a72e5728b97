// The safetensors reader/writer: round trips and a clear error for each kind of damage.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "qlc/kernels/safetensors.h"

namespace qlc::kernels {
namespace {

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("qlc_safetensors_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
            "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // Writes raw bytes: an 8-byte little-endian header length, the header, then `data`.
  std::string write_raw(const std::string& name, const std::string& header, const std::string& data,
                        uint64_t declared_len = UINT64_MAX) {
    const uint64_t len = declared_len == UINT64_MAX ? header.size() : declared_len;
    std::ofstream out(path(name), std::ios::binary);
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>((len >> (8 * i)) & 0xFF));
    out << header << data;
    return path(name);
  }

  void expect_error(const std::string& file, const std::string& fragment) {
    try {
      read_safetensors(file);
      ADD_FAILURE() << "no error for " << file;
    } catch (const SafetensorsError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(file), std::string::npos) << what;
      EXPECT_NE(what.find(fragment), std::string::npos) << "expected '" << fragment << "' in: " << what;
    }
  }

  std::filesystem::path dir_;
};

TEST_F(SafetensorsTest, RoundTripKeepsTensorsAndMetadata) {
  StFile f;
  const float values[5] = {1.5f, -2.0f, 0.0f, 3.25f, 1e-30f};
  const uint8_t bytes[3] = {7, 0, 255};
  f.tensors["a.weight"] = make_st_tensor("F32", {5}, values, 5);
  f.tensors["b"] = make_st_tensor("U8", {3, 1}, bytes, 3);
  f.tensors["empty"] = make_st_tensor<float>("F32", {0, 4}, nullptr, 0);
  f.metadata["format"] = "pt";
  write_safetensors(path("x.safetensors"), f);
  const StFile g = read_safetensors(path("x.safetensors"));
  EXPECT_EQ(g.metadata.at("format"), "pt");
  EXPECT_EQ(g.at("a.weight").shape, (std::vector<int64_t>{5}));
  EXPECT_EQ(g.at("a.weight").data, f.tensors["a.weight"].data);
  EXPECT_EQ(g.at("b").shape, (std::vector<int64_t>{3, 1}));
  EXPECT_EQ(g.at("b").data, f.tensors["b"].data);
  EXPECT_EQ(g.at("empty").numel(), 0);
  EXPECT_FALSE(std::filesystem::exists(path("x.safetensors.tmp")));
}

TEST_F(SafetensorsTest, HeaderIsPaddedSoDataStartsEightByteAligned) {
  StFile f;
  const float v = 1.0f;
  f.tensors["t"] = make_st_tensor("F32", {1}, &v, 1);
  write_safetensors(path("a.safetensors"), f);
  EXPECT_EQ(std::filesystem::file_size(path("a.safetensors")) % 8, 4u);  // 8 + header + 4 bytes
}

TEST_F(SafetensorsTest, MissingFile) { expect_error(path("nope.safetensors"), "cannot open"); }

TEST_F(SafetensorsTest, TooShortForTheLength) {
  std::ofstream(path("short.safetensors")) << "abc";
  expect_error(path("short.safetensors"), "truncated");
}

TEST_F(SafetensorsTest, HeaderLongerThanTheFile) {
  expect_error(write_raw("h.safetensors", "{}", "", 1000), "exceeds the file");
}

TEST_F(SafetensorsTest, HeaderNotJson) {
  expect_error(write_raw("j.safetensors", "{\"a\": [1, 2", ""), "not valid JSON");
}

TEST_F(SafetensorsTest, TruncatedData) {
  const std::string header = R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})";
  expect_error(write_raw("t.safetensors", header, std::string(8, '\0')), "truncated");
}

TEST_F(SafetensorsTest, OffsetsDisagreeWithShape) {
  const std::string header = R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})";
  expect_error(write_raw("o.safetensors", header, std::string(16, '\0')), "shape needs 12");
}

TEST_F(SafetensorsTest, UnknownDtype) {
  const std::string header = R"({"w":{"dtype":"F8_E9","shape":[1],"data_offsets":[0,1]}})";
  expect_error(write_raw("d.safetensors", header, std::string(1, '\0')), "unknown safetensors dtype");
}

TEST_F(SafetensorsTest, MetadataMustBeStrings) {
  expect_error(write_raw("m.safetensors", R"({"__metadata__":{"n":3}})", ""), "not a string");
}

// 2^62 F32 elements are 2^64 bytes, which wrapped to 0 in int64 arithmetic (undefined
// behaviour): an 80-byte file with no data was accepted as holding 4.6e18 elements.
TEST_F(SafetensorsTest, ElementCountOverflowIsAnError) {
  const std::string header = R"({"w":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}})";
  expect_error(write_raw("big.safetensors", header, ""), "more than 2^63 bytes");
  const std::string dims = R"({"w":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,0]}})";
  expect_error(write_raw("dims.safetensors", dims, ""), "more than 2^63 elements");
}

// [2.9] read as 2 and [1e30] was undefined behaviour: dimensions are JSON integers only.
TEST_F(SafetensorsTest, DimensionsMustBeIntegers) {
  for (const std::string dim : {"2.9", "1e30", "2.0", "\"2\"", "-1"}) {
    SCOPED_TRACE(dim);
    const std::string header =
        R"({"w":{"dtype":"U8","shape":[)" + dim + R"(],"data_offsets":[0,2]}})";
    expect_error(write_raw("f.safetensors", header, std::string(2, '\0')),
                 dim == "-1" ? "negative dimension" : "non-negative integers");
  }
}

TEST_F(SafetensorsTest, RepeatedKeyIsAnError) {
  const std::string header =
      R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"w":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})";
  expect_error(write_raw("r.safetensors", header, std::string(2, '\0')), "names 'w' twice");
}

// The format's reference: offsets tile the data from byte 0 to its end, no gap, no overlap.
TEST_F(SafetensorsTest, OffsetsMustBeContiguousAndNonOverlapping) {
  const std::string overlap =
      R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}})";
  expect_error(write_raw("o.safetensors", overlap, std::string(3, '\0')), "overlaps at byte 1");
  const std::string gap =
      R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"U8","shape":[1],"data_offsets":[2,3]}})";
  expect_error(write_raw("g.safetensors", gap, std::string(3, '\0')), "leaves a gap at byte 1");
  const std::string late = R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})";
  expect_error(write_raw("l.safetensors", late, std::string(2, '\0')), "leaves a gap at byte 0");
  const std::string tail = R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})";
  expect_error(write_raw("t.safetensors", tail, std::string(3, '\0')), "2 data bytes after the last tensor");
  // Listed out of order but tiling the data: fine.
  const std::string swapped =
      R"({"b":{"dtype":"U8","shape":[1],"data_offsets":[1,2]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})";
  EXPECT_EQ(read_safetensors(write_raw("s.safetensors", swapped, "xy")).at("b").data[0], 'y');
}

// nlohmann::json throws out_of_range (not parse_error) for a number beyond a double.
TEST_F(SafetensorsTest, NumberBeyondADoubleIsTheReadersError) {
  expect_error(write_raw("n.safetensors", R"({"__metadata__":{"x":"y"},"z":1e400})", ""),
               "not valid JSON");
}

TEST_F(SafetensorsTest, MissingTensorNamesWhatTheFileHolds) {
  StFile f;
  const float v = 1.0f;
  f.tensors["present"] = make_st_tensor("F32", {1}, &v, 1);
  write_safetensors(path("n.safetensors"), f);
  const StFile g = read_safetensors(path("n.safetensors"));
  try {
    g.at("absent");
    ADD_FAILURE();
  } catch (const SafetensorsError& e) {
    EXPECT_NE(std::string(e.what()).find("present"), std::string::npos) << e.what();
  }
}

TEST_F(SafetensorsTest, UnwritableDestinationIsAnError) {
  StFile f;
  EXPECT_THROW(write_safetensors((dir_ / "no_such_dir" / "x.safetensors").string(), f), SafetensorsError);
}

}  // namespace
}  // namespace qlc::kernels
