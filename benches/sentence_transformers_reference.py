"""The peer of the retrieval benchmark: sentence-transformers (PyTorch, CPU) embedding the same
sentences with the same all-MiniLM-L6-v2 weights, batch as given. Prints sentences per second
(median of three passes after a warm-up).

python3 sentence_transformers_reference.py MODEL_DIR SENTENCES.json BATCH
"""
import json
import sys
import time

import torch
from sentence_transformers import SentenceTransformer, models

model_dir, path, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
sentences = json.load(open(path))
torch.set_num_threads(2)
word = models.Transformer(model_dir, max_seq_length=256)
pool = models.Pooling(word.get_word_embedding_dimension(), pooling_mode="mean")
model = SentenceTransformer(modules=[word, pool, models.Normalize()], device="cpu")
model.encode(sentences[:batch], batch_size=batch)
times = []
for _ in range(3):
    start = time.perf_counter()
    model.encode(sentences, batch_size=batch)
    times.append(time.perf_counter() - start)
times.sort()
print(len(sentences) / times[1])
