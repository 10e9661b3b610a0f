r"""PyTorch peers of the two train steps, timed on the lent GPU in the same call as our exported XLA steps, so each
of our figures comes with a ratio to a well-tuned peer measured side by side (the GPU machine has PyTorch and JAX,
no TensorFlow). Written for this project; needs only torch.

    python3 torch_peers.py                          # ResNet-50 at 408 and BERT-large at 28 per GPU, bf16
    python3 torch_peers.py --resnet_batch=256 --bert_batch=32 --compile
    python3 torch_peers.py --device=cpu --tiny      # a quick check of the code paths on a CPU

- ResNet-50 v1.5 (stride on the 3x3 conv), channels_last, bf16 autocast, SGD with momentum (PyTorch has no LARS;
  the update is a small part of the step).
- BERT-large pretraining: 24 layers, hidden 1024, 16 heads, 512 tokens, 76 masked positions gathered before the
  MLM head, next-sentence head, scaled_dot_product_attention with the padding mask, bf16 autocast, fused AdamW
  (PyTorch has no LAMB).

One line per step: median step time over --steps timed steps after --warmup steps, and samples per second.
"""
import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn


# --- ResNet-50 v1.5 ---------------------------------------------------------------------------------------------
class Bottleneck(nn.Module):
  def __init__(self, cin, width, stride):
    super().__init__()
    cout = width * 4
    self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
    self.conv2, self.bn2 = nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
    self.conv3, self.bn3 = nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout)
    self.shortcut = None
    if stride != 1 or cin != cout:
      self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

  def forward(self, x):
    y = F.relu(self.bn1(self.conv1(x)))
    y = F.relu(self.bn2(self.conv2(y)))
    y = self.bn3(self.conv3(y))
    return F.relu(y + (x if self.shortcut is None else self.shortcut(x)))


def resnet50(num_classes, base=64):
  layers = [nn.Conv2d(3, base, 7, 2, 3, bias=False), nn.BatchNorm2d(base), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1)]
  cin = base
  for stage, blocks in enumerate((3, 4, 6, 3)):
    width = base * 2 ** stage
    for block in range(blocks):
      layers.append(Bottleneck(cin, width, 2 if block == 0 and stage > 0 else 1))
      cin = width * 4
  layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
  return nn.Sequential(*layers)


# --- BERT pretraining -------------------------------------------------------------------------------------------
class EncoderLayer(nn.Module):
  def __init__(self, hidden, heads, ff, dropout):
    super().__init__()
    self.heads, self.dropout = heads, dropout
    self.qkv, self.out = nn.Linear(hidden, 3 * hidden), nn.Linear(hidden, hidden)
    self.ff1, self.ff2 = nn.Linear(hidden, ff), nn.Linear(ff, hidden)
    self.ln1, self.ln2 = nn.LayerNorm(hidden, eps=1e-12), nn.LayerNorm(hidden, eps=1e-12)

  def forward(self, x, keep):
    b, n, h = x.shape
    q, k, v = self.qkv(x).view(b, n, 3, self.heads, h // self.heads).permute(2, 0, 3, 1, 4)
    p = self.dropout if self.training else 0.0
    a = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=p).transpose(1, 2).reshape(b, n, h)
    x = self.ln1(x + F.dropout(self.out(a), p, self.training))
    return self.ln2(x + F.dropout(self.ff2(F.gelu(self.ff1(x), approximate="tanh")), p, self.training))


class BertPretraining(nn.Module):
  def __init__(self, vocab=30522, hidden=1024, layers=24, heads=16, ff=4096, max_len=512, dropout=0.1):
    super().__init__()
    self.words, self.positions = nn.Embedding(vocab, hidden), nn.Embedding(max_len, hidden)
    self.types, self.ln = nn.Embedding(2, hidden), nn.LayerNorm(hidden, eps=1e-12)
    self.dropout = dropout
    self.layers = nn.ModuleList(EncoderLayer(hidden, heads, ff, dropout) for _ in range(layers))
    self.mlm_dense, self.mlm_ln = nn.Linear(hidden, hidden), nn.LayerNorm(hidden, eps=1e-12)
    self.mlm_bias = nn.Parameter(torch.zeros(vocab))
    self.pooler, self.nsp = nn.Linear(hidden, hidden), nn.Linear(hidden, 2)

  def forward(self, ids, types, mask, positions, labels, weights, next_sentence):
    n = ids.shape[1]
    x = self.words(ids) + self.positions.weight[:n] + self.types(types)
    x = F.dropout(self.ln(x), self.dropout, self.training)
    keep = mask[:, None, None, :].bool()
    for layer in self.layers:
      x = layer(x, keep)
    picked = torch.gather(x, 1, positions[..., None].expand(-1, -1, x.shape[-1]))  # only the masked positions
    logits = self.mlm_ln(F.gelu(self.mlm_dense(picked), approximate="tanh")) @ self.words.weight.T + self.mlm_bias
    mlm = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), reduction="none")
    mlm = (mlm * weights.flatten()).sum() / weights.sum().clamp(min=1e-5)
    nsp = F.cross_entropy(self.nsp(torch.tanh(self.pooler(x[:, 0]))).float(), next_sentence)
    return mlm + nsp


# --- timing -----------------------------------------------------------------------------------------------------
def timed(step, device, warmup, steps):
  sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
  for _ in range(warmup):
    step()
  sync()
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    step()
    sync()
    times.append(time.perf_counter() - t)
  return sorted(times)[len(times) // 2]


def train_step(model, optimizer, loss_fn, device, dtype):
  def step():
    with torch.autocast(device.type, dtype=dtype):
      loss = loss_fn()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
  return step


def resnet_peer(a, device, dtype):
  size, classes = (64, 10) if a.tiny else (224, 1000)
  model = resnet50(classes, base=8 if a.tiny else 64).to(device, memory_format=torch.channels_last)
  images = torch.randn(a.resnet_batch, 3, size, size, device=device).to(memory_format=torch.channels_last)
  labels = torch.randint(0, classes, (a.resnet_batch,), device=device)
  forward = torch.compile(model) if a.compile else model
  optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-5)
  step = train_step(model, optimizer, lambda: F.cross_entropy(forward(images), labels, label_smoothing=0.1),
                    device, dtype)
  return timed(step, device, a.warmup, a.steps), a.resnet_batch


def bert_peer(a, device, dtype):
  n, predictions = (128, 20) if a.tiny else (512, 76)
  shape = dict(hidden=64, layers=2, heads=4, ff=256) if a.tiny else {}
  model = BertPretraining(**shape).to(device)
  b = a.bert_batch
  batch = dict(ids=torch.randint(0, 30522, (b, n), device=device), types=torch.zeros(b, n, dtype=torch.long,
               device=device), mask=torch.ones(b, n, device=device),
               positions=torch.randint(0, n, (b, predictions), device=device),
               labels=torch.randint(0, 30522, (b, predictions), device=device),
               weights=torch.ones(b, predictions, device=device),
               next_sentence=torch.randint(0, 2, (b,), device=device))
  batch["mask"][:, n * 4 // 5:] = 0  # a fifth of each row is padding, as in the real data on average
  forward = torch.compile(model) if a.compile else model
  optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, fused=device.type == "cuda")
  step = train_step(model, optimizer, lambda: forward(**batch), device, dtype)
  return timed(step, device, a.warmup, a.steps), b


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--device", default="cuda")
  p.add_argument("--resnet_batch", type=int, default=408, help="per GPU (flags/resnet/8xgpu.flags: 3264 / 8)")
  p.add_argument("--bert_batch", type=int, default=28, help="micro-batch per GPU (flags/bert/8xgpu.flags: 448 / 8 "
                 "/ 2 accumulation steps)")
  p.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
  p.add_argument("--compile", action="store_true", help="torch.compile the model")
  p.add_argument("--only", choices=("resnet", "bert"), help="time one of the two")
  p.add_argument("--tiny", action="store_true", help="small shapes, to check the code on a CPU")
  p.add_argument("--warmup", type=int, default=5)
  p.add_argument("--steps", type=int, default=20)
  a = p.parse_args()
  device = torch.device(a.device)
  dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[a.precision]
  torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
  name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
  for task, peer, unit in (("resnet", resnet_peer, "images"), ("bert", bert_peer, "sequences")):
    if a.only in (None, task):
      seconds, batch = peer(a, device, dtype)
      print(f"torch {task} batch {batch} {a.precision}{' compiled' if a.compile else ''} on {name}: "
            f"{seconds * 1e3:.1f} ms median step, {batch / seconds:,.0f} {unit}/s", flush=True)


if __name__ == "__main__":
  main()
