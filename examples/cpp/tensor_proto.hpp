// Decodes the few fields of a serialized onnx.TensorProto that test vectors use:
// dims (1), data_type (2), float_data (4), int32_data (5), int64_data (7), name (8),
// raw_data (9), double_data (10). No protobuf library is needed: the wire format is
// varints and length-delimited fields (https://protobuf.dev/programming-guides/encoding/).
#pragma once

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace tensor_proto {

struct Tensor {
  std::string name;
  int32_t data_type = 0;  // onnx.TensorProto.DataType: 1 float, 7 int64, 9 bool, ...
  std::vector<int64_t> dims;
  std::string raw_data;  // little-endian element bytes, whichever field carried them
};

class Reader {
 public:
  Reader(const std::string& bytes, size_t begin, size_t end) : b_(bytes), pos_(begin), end_(end) {}
  bool done() const { return pos_ >= end_; }
  uint64_t varint() {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= end_) throw std::runtime_error("truncated varint");
      uint8_t byte = static_cast<uint8_t>(b_[pos_++]);
      value |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if (!(byte & 0x80)) return value;
    }
    throw std::runtime_error("varint too long");
  }
  size_t length_delimited(size_t* begin) {
    size_t n = static_cast<size_t>(varint());
    if (n > end_ - pos_) throw std::runtime_error("truncated field");
    *begin = pos_;
    pos_ += n;
    return n;
  }
  void skip(uint32_t wire) {
    size_t ignored;
    switch (wire) {
      case 0: varint(); break;
      case 1: pos_ += 8; break;
      case 2: length_delimited(&ignored); break;
      case 5: pos_ += 4; break;
      default: throw std::runtime_error("unsupported wire type " + std::to_string(wire));
    }
  }
  template <typename T>
  void fixed(std::string* out) {  // one unpacked float/double element
    if (end_ - pos_ < sizeof(T)) throw std::runtime_error("truncated fixed field");
    out->append(b_, pos_, sizeof(T));
    pos_ += sizeof(T);
  }

 private:
  const std::string& b_;
  size_t pos_, end_;
};

// Appends the int64 varints of [begin, end) as little-endian elements of width `width` bytes.
inline void append_varints(const std::string& bytes, size_t begin, size_t end, size_t width,
                           std::string* out) {
  Reader r(bytes, begin, end);
  while (!r.done()) {
    int64_t v = static_cast<int64_t>(r.varint());
    out->append(reinterpret_cast<const char*>(&v), width);  // little-endian host assumed
  }
}

inline size_t element_size(int32_t data_type) {
  switch (data_type) {
    case 1: case 6: return 4;     // float, int32
    case 2: case 3: case 9: return 1;  // uint8, int8, bool
    case 5: case 10: case 16: return 2;  // int16, float16, bfloat16
    case 7: case 11: return 8;    // int64, double
    default: throw std::runtime_error("unsupported TensorProto data_type " + std::to_string(data_type));
  }
}

inline Tensor parse(const std::string& bytes) {
  Tensor t;
  std::string repeated;  // elements from float_data / int32_data / int64_data / double_data
  Reader r(bytes, 0, bytes.size());
  while (!r.done()) {
    uint64_t tag = r.varint();
    uint32_t field = static_cast<uint32_t>(tag >> 3), wire = static_cast<uint32_t>(tag & 7);
    size_t begin = 0, n = 0;
    if (field == 1 && wire == 0) {
      t.dims.push_back(static_cast<int64_t>(r.varint()));
    } else if (field == 1 && wire == 2) {  // packed dims
      n = r.length_delimited(&begin);
      Reader packed(bytes, begin, begin + n);
      while (!packed.done()) t.dims.push_back(static_cast<int64_t>(packed.varint()));
    } else if (field == 2 && wire == 0) {
      t.data_type = static_cast<int32_t>(r.varint());
    } else if ((field == 4 || field == 10) && wire == 2) {  // packed float / double
      n = r.length_delimited(&begin);
      repeated.append(bytes, begin, n);
    } else if (field == 4 && wire == 5) {
      r.fixed<float>(&repeated);
    } else if (field == 10 && wire == 1) {
      r.fixed<double>(&repeated);
    } else if ((field == 5 || field == 7) && wire == 2) {  // packed int32 / int64 varints
      n = r.length_delimited(&begin);
      append_varints(bytes, begin, begin + n, 8, &repeated);  // narrowed below
    } else if (field == 8 && wire == 2) {
      n = r.length_delimited(&begin);
      t.name.assign(bytes, begin, n);
    } else if (field == 9 && wire == 2) {
      n = r.length_delimited(&begin);
      t.raw_data.assign(bytes, begin, n);
    } else {
      r.skip(wire);
    }
  }
  if (t.raw_data.empty() && !repeated.empty()) {
    // int32_data holds every narrow integer type (and bool, float16) as one varint each,
    // gathered above as int64: narrow each to the element width
    size_t width = element_size(t.data_type);
    bool varints = !(t.data_type == 1 || t.data_type == 11);
    if (varints && width != 8) {
      std::string narrowed;
      for (size_t i = 0; i + 8 <= repeated.size(); i += 8) narrowed.append(repeated, i, width);
      repeated.swap(narrowed);
    }
    t.raw_data.swap(repeated);
  }
  int64_t count = 1;
  for (int64_t d : t.dims) count *= d;
  if (static_cast<size_t>(count) * element_size(t.data_type) != t.raw_data.size())
    throw std::runtime_error("tensor '" + t.name + "' holds " + std::to_string(t.raw_data.size()) +
                             " bytes for dims of " + std::to_string(count) + " elements");
  return t;
}

}  // namespace tensor_proto
