'use strict';
// Decodes the few fields of a serialized onnx.TensorProto that test vectors use: dims (1),
// data_type (2), float_data (4), int32_data (5), int64_data (7), name (8), raw_data (9),
// double_data (10). The protobuf wire format is varints and length-delimited fields, so no
// protobuf library (nor onnx.proto) is needed.

// onnx.TensorProto.DataType -> onnxruntime tensor type and typed array
const TYPES = {
  1: ['float32', Float32Array],
  2: ['uint8', Uint8Array],
  3: ['int8', Int8Array],
  5: ['int16', Int16Array],
  6: ['int32', Int32Array],
  7: ['int64', BigInt64Array],
  9: ['bool', Uint8Array],
  10: ['float16', Uint16Array],
  11: ['float64', Float64Array],
};

function readVarint(bytes, state) {
  let value = 0n;
  for (let shift = 0n; shift < 64n; shift += 7n) {
    if (state.pos >= bytes.length) throw new Error('truncated varint');
    const byte = bytes[state.pos++];
    value |= BigInt(byte & 0x7f) << shift;
    if (!(byte & 0x80)) return value;
  }
  throw new Error('varint too long');
}

function readLength(bytes, state) {
  const n = Number(readVarint(bytes, state));
  if (state.pos + n > bytes.length) throw new Error('truncated field');
  const slice = bytes.subarray(state.pos, state.pos + n);
  state.pos += n;
  return slice;
}

function varints(slice) {
  const state = { pos: 0 };
  const values = [];
  while (state.pos < slice.length) values.push(BigInt.asIntN(64, readVarint(slice, state)));
  return values;
}

/** Parses a TensorProto: {name, dataType, type, dims, data} (data: a typed array). */
function parseTensorProto(bytes) {
  const state = { pos: 0 };
  const out = { name: '', dataType: 0, dims: [] };
  let raw = null;
  const floats = [];
  const ints = [];
  while (state.pos < bytes.length) {
    const tag = Number(readVarint(bytes, state));
    const field = tag >>> 3;
    const wire = tag & 7;
    if (field === 1 && wire === 0) out.dims.push(Number(readVarint(bytes, state)));
    else if (field === 1 && wire === 2) out.dims.push(...varints(readLength(bytes, state)).map(Number));
    else if (field === 2 && wire === 0) out.dataType = Number(readVarint(bytes, state));
    else if (field === 8 && wire === 2) out.name = Buffer.from(readLength(bytes, state)).toString('utf8');
    else if (field === 9 && wire === 2) raw = readLength(bytes, state);
    else if ((field === 4 || field === 10) && wire === 2) floats.push(readLength(bytes, state));
    else if ((field === 5 || field === 7) && wire === 2) ints.push(...varints(readLength(bytes, state)));
    else if (wire === 0) readVarint(bytes, state);
    else if (wire === 1) state.pos += 8;
    else if (wire === 2) readLength(bytes, state);
    else if (wire === 5) state.pos += 4;
    else throw new Error(`unsupported wire type ${wire}`);
  }
  if (!(out.dataType in TYPES)) throw new Error(`unsupported data_type ${out.dataType} in ${out.name}`);
  const [type, ArrayType] = TYPES[out.dataType];
  const count = out.dims.reduce((a, b) => a * b, 1);
  let data;
  if (raw !== null) {
    const copy = new Uint8Array(raw); // aligned copy
    data = new ArrayType(copy.buffer, 0, count);
  } else if (floats.length) {
    const joined = Buffer.concat(floats.map((f) => Buffer.from(f)));
    const copy = new Uint8Array(joined);
    data = new ArrayType(copy.buffer, 0, count);
  } else {
    data = ArrayType === BigInt64Array ? BigInt64Array.from(ints) : ArrayType.from(ints.map(Number));
  }
  if (data.length !== count) throw new Error(`${out.name}: ${data.length} elements for dims [${out.dims}]`);
  return { ...out, type, data };
}

module.exports = { parseTensorProto };
