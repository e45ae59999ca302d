"""Starts the llama.cpp server of the xllamacpp wheel on 127.0.0.1 for the tests.

Usage: PYTHONPATH=$(tests/xllamacpp.sh) python3 tests/llama_server.py MODEL.gguf [THREADS]
Prints the server's base URL on one line, then serves until stdin closes or it is killed.
"""

import sys

import xllamacpp as xlc

params = xlc.CommonParams()
params.model.path = sys.argv[1]
params.n_ctx = 2048
threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
params.cpuparams.n_threads = threads
params.cpuparams_batch.n_threads = threads
server = xlc.Server(params)
print(server.listening_address, flush=True)
sys.stdin.read()
