// A minimal JSON reader: enough for rlpol.json (objects, arrays, strings, numbers, bools,
// null). No header-only JSON library (nlohmann-json, ...) is installed offline here, so this
// parses the document itself; swap in such a library if your project has one.
#pragma once

#include <cstdlib>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace mini_json {

struct Value {
  enum class Kind { Null, Bool, Number, String, Array, Object } kind = Kind::Null;
  bool boolean = false;
  double number = 0.0;
  std::string string;
  std::vector<Value> array;
  std::map<std::string, Value> object;

  const Value& at(const std::string& key) const {
    auto found = object.find(key);
    if (kind != Kind::Object || found == object.end())
      throw std::runtime_error("rlpol.json: missing field '" + key + "'");
    return found->second;
  }
};

class Parser {
 public:
  explicit Parser(const std::string& text) : text_(text) {}

  Value parse() {
    Value value = parse_value();
    skip_space();
    if (pos_ != text_.size()) fail("trailing characters");
    return value;
  }

 private:
  const std::string& text_;
  size_t pos_ = 0;

  [[noreturn]] void fail(const std::string& why) const {
    throw std::runtime_error("rlpol.json: " + why + " at byte " + std::to_string(pos_));
  }
  void skip_space() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }
  char peek() {
    skip_space();
    if (pos_ >= text_.size()) fail("unexpected end");
    return text_[pos_];
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++pos_;
  }
  bool literal(const char* word) {
    std::string w(word);
    if (text_.compare(pos_, w.size(), w) != 0) return false;
    pos_ += w.size();
    return true;
  }

  Value parse_value() {
    Value value;
    char c = peek();
    if (c == '{') {
      value.kind = Value::Kind::Object;
      ++pos_;
      if (peek() == '}') { ++pos_; return value; }
      while (true) {
        std::string key = parse_string();
        expect(':');
        value.object[key] = parse_value();
        if (peek() == ',') { ++pos_; continue; }
        expect('}');
        return value;
      }
    }
    if (c == '[') {
      value.kind = Value::Kind::Array;
      ++pos_;
      if (peek() == ']') { ++pos_; return value; }
      while (true) {
        value.array.push_back(parse_value());
        if (peek() == ',') { ++pos_; continue; }
        expect(']');
        return value;
      }
    }
    if (c == '"') {
      value.kind = Value::Kind::String;
      value.string = parse_string();
      return value;
    }
    if (literal("true")) { value.kind = Value::Kind::Bool; value.boolean = true; return value; }
    if (literal("false")) { value.kind = Value::Kind::Bool; return value; }
    if (literal("null")) return value;
    const char* start = text_.c_str() + pos_;
    char* end = nullptr;
    value.number = std::strtod(start, &end);
    if (end == start) fail("expected a value");
    value.kind = Value::Kind::Number;
    pos_ += static_cast<size_t>(end - start);
    return value;
  }

  std::string parse_string() {
    expect('"');
    std::string out;
    while (pos_ < text_.size() && text_[pos_] != '"') {
      char c = text_[pos_++];
      if (c != '\\') { out += c; continue; }
      if (pos_ >= text_.size()) fail("unterminated escape");
      char e = text_[pos_++];
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'u': {  // keep ASCII; other code points become '?' (names are ASCII in rlpol)
          unsigned code = std::stoul(text_.substr(pos_, 4), nullptr, 16);
          pos_ += 4;
          out += code < 0x80 ? static_cast<char>(code) : '?';
          break;
        }
        default: out += e;  // \" \\ \/
      }
    }
    expect('"');
    return out;
  }
};

inline Value parse(const std::string& text) { return Parser(text).parse(); }

}  // namespace mini_json
