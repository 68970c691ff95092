"""The policy server: rlpol artifacts over the KServe v2 / Open Inference Protocol (HTTP).

``rlpol serve ARTIFACT ...`` (:func:`rlpol.serve.server.serve`) serves ONNX artifacts with
numpy + onnxruntime + Starlette on uvicorn and never imports torch; TorchScript artifacts load
torch on demand. Triton's own client (``tritonclient[http]``) works against it unchanged.

* :mod:`~rlpol.serve.repository` -- which models: files, ``name=PATH``, model repositories;
* :mod:`~rlpol.serve.model` -- a served artifact: its tensor table, a batched numpy call;
* :mod:`~rlpol.serve.protocol` -- the v2 codec, JSON and binary tensors;
* :mod:`~rlpol.serve.feeds` -- a request's graph inputs: server-drawn noise, initial states;
* :mod:`~rlpol.serve.sequences` -- stateful sequences (``sequence_id``, start, end, expiry);
* :mod:`~rlpol.serve.batcher` -- dynamic batching across concurrent requests;
* :mod:`~rlpol.serve.metrics` -- Prometheus metrics;
* :mod:`~rlpol.serve.app` -- the ASGI app; :mod:`~rlpol.serve.server` -- uvicorn, SIGTERM;
* :mod:`~rlpol.serve.triton_config` -- a model's Triton model configuration, one builder;
* :mod:`~rlpol.serve.triton_repo` -- ``rlpol triton-repo``: a repository for Triton's
  onnxruntime backend;
* :mod:`~rlpol.serve.engines` -- ``--engine``: the embedded server, Triton (PyTriton), Ray.

Install with ``pip install rlpol[serve]`` (``rlpol[triton]`` for Triton).
"""
