#!/usr/bin/env node
'use strict';
// node verify.js BUNDLE_DIR [--atol A] [--rtol R]
//
// Replays every test vector of an rlpol bundle (test_data_set_N/input_i.pb, output_j.pb) through
// model.onnx with onnxruntime-node. Reads rlpol.json for the graph's input and output names,
// checks that every data set holds them in that order, prints the largest |diff| of each output
// and exits 0 when all match (|diff| <= atol + rtol * |expected| for floats, exact for integers),
// 1 on a mismatch, 2 when the bundle cannot be read.
const fs = require('node:fs');
const path = require('node:path');
const ort = require('onnxruntime-node');
const { parseTensorProto } = require('./tensor_proto');

function readTensors(dir, role) {
  const tensors = [];
  for (let i = 0; fs.existsSync(path.join(dir, `${role}_${i}.pb`)); i++) {
    tensors.push(parseTensorProto(fs.readFileSync(path.join(dir, `${role}_${i}.pb`))));
  }
  return tensors;
}

function readDataSets(bundle) {
  const sets = [];
  for (let n = 0; fs.existsSync(path.join(bundle, `test_data_set_${n}`)); n++) {
    const dir = path.join(bundle, `test_data_set_${n}`);
    sets.push({ name: `test_data_set_${n}`, inputs: readTensors(dir, 'input'), outputs: readTensors(dir, 'output') });
  }
  if (!sets.length) throw new Error(`${bundle} holds no test_data_set_0`);
  return sets;
}

function checkNames(set, tensors, expected, role) {
  const found = tensors.map((t) => t.name);
  if (found.join('\n') !== expected.join('\n')) {
    throw new Error(`${set.name}: its ${role} [${found}] are not the graph's [${expected}] (rlpol.json)`);
  }
}

/** [max |actual - expected|, matched] for one output of one data set. */
function compare(expected, actual, atol, rtol) {
  if (expected.type !== actual.type || expected.dims.join() !== actual.dims.join()) return [Infinity, false];
  const floating = ['float32', 'float64', 'float16'].includes(expected.type);
  if (expected.type === 'float16') throw new Error('float16 outputs are not compared by this example');
  let worst = 0;
  let ok = true;
  for (let i = 0; i < expected.data.length; i++) {
    const e = expected.data[i];
    const a = actual.data[i];
    if (!floating) {
      const diff = Math.abs(Number(BigInt(a) - BigInt(e)));
      worst = Math.max(worst, diff);
      ok = ok && diff === 0;
      continue;
    }
    if (e === a || (Number.isNaN(e) && Number.isNaN(a))) continue;
    let diff = Math.abs(a - e);
    if (Number.isNaN(diff)) diff = Infinity;
    worst = Math.max(worst, diff);
    ok = ok && diff <= atol + rtol * Math.abs(e);
  }
  return [worst, ok];
}

async function main(argv) {
  if (argv.length < 1) {
    console.error('usage: node verify.js BUNDLE_DIR [--atol A] [--rtol R]');
    return 2;
  }
  const bundle = argv[0];
  let atol = 1e-4;
  let rtol = 1e-5;
  for (let i = 1; i + 1 < argv.length; i += 2) {
    if (argv[i] === '--atol') atol = Number(argv[i + 1]);
    else if (argv[i] === '--rtol') rtol = Number(argv[i + 1]);
    else { console.error(`unknown option ${argv[i]}`); return 2; }
  }
  let metadata, sets, session;
  try {
    metadata = JSON.parse(fs.readFileSync(path.join(bundle, 'rlpol.json'), 'utf8'));
    const inputNames = [...metadata.inputs, ...metadata.noise, ...metadata.parameters].map((e) => e.name);
    const outputNames = metadata.outputs.map((e) => e.name);
    sets = readDataSets(bundle);
    for (const set of sets) {
      checkNames(set, set.inputs, inputNames, 'inputs');
      checkNames(set, set.outputs, outputNames, 'outputs');
    }
    session = await ort.InferenceSession.create(path.join(bundle, 'model.onnx'), { intraOpNumThreads: 1 });
  } catch (error) {
    console.error(`error: ${error.message}`);
    return 2;
  }
  const rows = metadata.outputs.map((e) => ({ output: e.name, worst: 0, where: sets[0].name, ok: true }));
  for (const set of sets) {
    const feeds = {};
    for (const t of set.inputs) feeds[t.name] = new ort.Tensor(t.type, t.data, t.dims);
    const results = await session.run(feeds);
    set.outputs.forEach((expected, j) => {
      const [diff, ok] = compare(expected, results[expected.name], atol, rtol);
      rows[j].ok = rows[j].ok && ok;
      if (diff > rows[j].worst) { rows[j].worst = diff; rows[j].where = set.name; }
    });
  }
  const line = (cells) => `| ${cells.map((c, i) => String(c).padEnd([12, 28, 10, 16, 8][i])).join(' | ')} |`;
  console.log(line(['model', 'output', 'max |diff|', 'worst data set', 'status']));
  for (const r of rows) {
    console.log(line(['model.onnx', r.output, r.worst === 0 ? '0' : r.worst.toExponential(2), r.where, r.ok ? 'ok' : 'MISMATCH']));
  }
  const ok = rows.every((r) => r.ok);
  console.log(`${ok ? 'bundle ok' : 'bundle FAILED'}: ${sets.length} data sets, atol ${atol}, rtol ${rtol}`);
  return ok ? 0 : 1;
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (error) => {
  console.error(`error: ${error.stack || error}`);
  process.exitCode = 2;
});
