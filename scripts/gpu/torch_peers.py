r"""PyTorch peers of our train steps, timed on the lent GPU in the same call as our exported XLA steps, so each of
our figures comes with a ratio to a well-tuned peer measured side by side (the GPU machine has PyTorch and JAX, no
TensorFlow). Written for this project; needs only torch.

    python3 torch_peers.py --like=STEP.step.json --out=DIR [--compile]  # the peer of one exported step (measure.sh)
    python3 torch_peers.py --task=resnet --batch=408 --precision=fp16    # or say the batch yourself
    python3 torch_peers.py --task=bert --batch=28 --packing_factor=2.0   # 28 packed rows of 2 sequences
    python3 torch_peers.py --task=bert --device=cpu --tiny --batch=4     # a quick check of the code paths on a CPU

- ResNet-50 v1.5 (stride on the 3x3 conv), channels_last, bf16 or fp16 autocast (fp16 with a GradScaler, as our
  fp16 step scales its loss), label smoothing 0.1, and LARS as the closed division's (below).
- BERT-large pretraining: 24 layers, hidden 1024, 16 heads, 512 tokens, 76 masked positions gathered before the
  MLM head, next-sentence head, scaled_dot_product_attention with the padding mask (unpacked) or the block-diagonal
  mask of packed rows (--packing_factor: each row holds that many sequences, each with its own positions and
  [CLS], as tf_gp2bm.tasks.bert.packing builds them), bf16 autocast, gradient clipping at global norm 1.0, LAMB.
- The optimizers are the project's math (tf_gp2bm/optimizers; torch.optim has neither LARS nor LAMB), written with
  torch._foreach_* multi-tensor ops: one kernel launch per op over every tensor, as a tuned peer does. One-dim
  tensors (batch-norm / LayerNorm scale and shift, biases) get no weight decay and no trust ratio, as the
  project's exclusion lists by name. --optimizer=sgd_adamw times SGD-momentum / fused AdamW instead.

One line per step: median step time over --steps timed steps after --warmup steps, and samples per second (packed
rows count their sequences, as the trainer does); with --out, DIR/torch_PEER[_compiled].json as well.
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn


# --- the closed division's optimizers, multi-tensor ---------------------------------------------------------------
def split_params(model):
  """Two parameter groups: adapted (weight decay and trust ratio) and excluded (one-dim: norms' scale/shift and
  biases, the tensors the project's optimizers exclude by name)."""
  params = [p for p in model.parameters() if p.requires_grad]
  return [{"params": [p for p in params if p.ndim > 1], "adapt": True},
          {"params": [p for p in params if p.ndim <= 1], "adapt": False}]


def _trust_scaled(trust_num, trust_den, scale):
  """[scale * trust] per tensor, as 0-dim tensors (no host sync): trust = num / den where both are > 0, else 1."""
  return list((scale * (trust_num / trust_den)).unbind())


def _bias_correction(beta, t):
  """1 - beta^t in float32 on the host, as the reference computes it: 1 - 0.999 in float32 is 1.3e-5 off the
  exact 0.001, and the peer should round as our step does."""
  return float(1.0 - torch.tensor(beta, dtype=torch.float32) ** t)


class LARS(torch.optim.Optimizer):
  """MLPerf LARS as tf_gp2bm.optimizers.lars (the reference's MLPERF_LARSOptimizer), for a group with adapt:
      trust = eeta |w| / (|g| + wd |w| + eps)  if |w| > 0 and |g| > 0, else 1;  g <- g + wd w
  then for every tensor  m <- momentum m - lr trust g;  w <- w + m  (a group without adapt: trust 1, no decay).
  eps: the reference's 0 becomes the Keras epsilon 1e-7 (as the project's KERAS_EPSILON)."""

  def __init__(self, params, lr, momentum=0.9, weight_decay=5e-5, eeta=0.001, epsilon=1e-7):
    super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eeta=eeta, epsilon=epsilon,
                                  adapt=True))

  @torch.no_grad()
  def step(self, closure=None):
    for group in self.param_groups:
      params = [p for p in group["params"] if p.grad is not None]
      if not params:
        continue
      grads = [p.grad for p in params]
      bufs = [self.state[p].setdefault("momentum", torch.zeros_like(p)) for p in params]
      lr, wd = group["lr"], group["weight_decay"]
      torch._foreach_mul_(bufs, group["momentum"])
      if group["adapt"]:
        w = torch.stack(torch._foreach_norm(params))
        g = torch.stack(torch._foreach_norm(grads))
        ok = (w > 0) & (g > 0)
        scaled = _trust_scaled(torch.where(ok, group["eeta"] * w, 1.0),
                               torch.where(ok, g + wd * w + group["epsilon"], 1.0), lr)
        grads = torch._foreach_add(grads, params, alpha=wd)
        torch._foreach_sub_(bufs, torch._foreach_mul(grads, scaled))
      else:
        torch._foreach_add_(bufs, grads, alpha=-lr)
      torch._foreach_add_(params, bufs)


class LAMB(torch.optim.Optimizer):
  """LAMB as tf_gp2bm.optimizers.lamb (the MLPerf BERT reference), update t = 1, 2, ...:
      m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;  u = (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
      adapt: u <- u + wd w, trust = |w| / |u| if both > 0 else 1;  w <- w - lr trust u."""

  def __init__(self, params, lr, betas=(0.9, 0.999), epsilon=1e-6, weight_decay=0.01):
    super().__init__(params, dict(lr=lr, betas=betas, epsilon=epsilon, weight_decay=weight_decay, adapt=True))
    self.t = 0  # the update number: the bias corrections are host floats, as the schedule's step is known

  @torch.no_grad()
  def step(self, closure=None):
    self.t += 1
    for group in self.param_groups:
      params = [p for p in group["params"] if p.grad is not None]
      if not params:
        continue
      grads = [p.grad for p in params]
      state = [self.state[p] for p in params]
      ms = [s.setdefault("m", torch.zeros_like(p)) for s, p in zip(state, params)]
      vs = [s.setdefault("v", torch.zeros_like(p)) for s, p in zip(state, params)]
      (b1, b2), lr = group["betas"], group["lr"]
      torch._foreach_mul_(ms, b1)
      torch._foreach_add_(ms, grads, alpha=1.0 - b1)
      torch._foreach_mul_(vs, b2)
      torch._foreach_addcmul_(vs, grads, grads, value=1.0 - b2)
      denom = torch._foreach_div(vs, _bias_correction(b2, self.t))
      torch._foreach_sqrt_(denom)
      torch._foreach_add_(denom, group["epsilon"])
      update = torch._foreach_div(ms, _bias_correction(b1, self.t))
      torch._foreach_div_(update, denom)
      if group["adapt"]:
        torch._foreach_add_(update, params, alpha=group["weight_decay"])
        w = torch.stack(torch._foreach_norm(params))
        u = torch.stack(torch._foreach_norm(update))
        ok = (w > 0) & (u > 0)
        torch._foreach_mul_(update, _trust_scaled(torch.where(ok, w, 1.0), torch.where(ok, u, 1.0), lr))
        torch._foreach_sub_(params, update)
      else:
        torch._foreach_add_(params, update, alpha=-lr)


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

  def forward(self, ids, types, keep, position_ids, cls, positions, labels, weights, next_sentence, nsp_weights):
    """keep [b, 1, n, n] or [b, 1, 1, n]: which keys each query sees; cls [b, k]: each sequence's [CLS] token."""
    x = self.words(ids) + self.positions(position_ids) + self.types(types)
    x = F.dropout(self.ln(x), self.dropout, self.training)
    for layer in self.layers:
      x = layer(x, keep)
    picked = torch.gather(x, 1, positions[..., None].expand(-1, -1, x.shape[-1]))  # only the masked positions
    logits = self.mlm_ln(F.gelu(self.mlm_dense(picked), approximate="tanh")) @ self.words.weight.T + self.mlm_bias
    mlm = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), reduction="none")
    mlm = (mlm * weights.flatten()).sum() / weights.sum().clamp(min=1e-5)
    pooled = torch.tanh(self.pooler(torch.gather(x, 1, cls[..., None].expand(-1, -1, x.shape[-1]))))
    nsp = F.cross_entropy(self.nsp(pooled).float().flatten(0, 1), next_sentence.flatten(), reduction="none")
    return mlm + (nsp * nsp_weights.flatten()).sum() / nsp_weights.sum().clamp(min=1e-5)


def bert_batch(rows, n, predictions, per_row, device, vocab=30522):
  """Synthetic rows: unpacked (per_row 1: one sequence, its last fifth padding, as the real data on average) or
  packed (per_row sequences of n // per_row tokens each, positions restarting at each, attention block-diagonal
  over sequences, up to 3 next-sentence slots as tf_gp2bm.tasks.bert.packing)."""
  ints = lambda high, *shape: torch.randint(0, high, shape, device=device)
  batch = dict(ids=ints(vocab, rows, n), types=torch.zeros(rows, n, dtype=torch.long, device=device),
               positions=ints(n, rows, predictions), labels=ints(vocab, rows, predictions),
               weights=torch.ones(rows, predictions, device=device))
  if per_row == 1:
    valid = torch.arange(n, device=device) < n * 4 // 5
    batch.update(keep=valid.expand(rows, 1, 1, n), position_ids=torch.arange(n, device=device).expand(rows, n),
                 cls=torch.zeros(rows, 1, dtype=torch.long, device=device), next_sentence=ints(2, rows, 1),
                 nsp_weights=torch.ones(rows, 1, device=device))
    return batch
  slots, length = max(per_row, 3), n // per_row
  sequence = torch.clamp(torch.arange(n, device=device) // length, max=per_row - 1)  # 0 .. per_row - 1
  keep = sequence[:, None] == sequence[None, :]
  cls = torch.zeros(slots, dtype=torch.long, device=device)
  cls[:per_row] = torch.arange(per_row, device=device) * length
  batch.update(keep=keep.expand(rows, 1, n, n), position_ids=(torch.arange(n, device=device) - sequence * length)
               .expand(rows, n), cls=cls.expand(rows, slots), next_sentence=ints(2, rows, slots),
               nsp_weights=(torch.arange(slots, device=device) < per_row).float().expand(rows, slots))
  return batch


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


def train_step(model, optimizer, loss_fn, device, dtype, clip=None):
  """One step: forward under autocast (not for fp32), backward, optional clipping, the update. fp16 scales the
  loss with a GradScaler, which unscales the gradients before clipping and skips the update on overflow."""
  scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

  def step():
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
      loss = loss_fn()
    scaler.scale(loss).backward()
    if clip:
      scaler.unscale_(optimizer)
      torch.nn.utils.clip_grad_norm_(model.parameters(), clip, foreach=True)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
  return step


def resnet_peer(a, device, dtype):
  size, classes = (32, 10) if a.tiny else (224, 1000)
  model = resnet50(classes, base=8 if a.tiny else 64).to(device, memory_format=torch.channels_last)
  images = torch.randn(a.batch, 3, size, size, device=device).to(memory_format=torch.channels_last)
  labels = torch.randint(0, classes, (a.batch,), device=device)
  forward = torch.compile(model) if a.compile else model
  if a.optimizer == "lars_lamb":  # the 8-GPU flagfile's momentum and weight decay; LR: any constant (time only)
    optimizer = LARS(split_params(model), lr=1.0, momentum=0.9, weight_decay=5e-5)
  else:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-5, foreach=True)
  step = train_step(model, optimizer, lambda: F.cross_entropy(forward(images), labels, label_smoothing=0.1),
                    device, dtype)
  return timed(step, device, a.warmup, a.steps), a.batch


def bert_peer(a, device, dtype):
  n, predictions = (64, 10) if a.tiny else (512, 76)
  shape = dict(vocab=1000, hidden=64, layers=2, heads=4, ff=256, max_len=n) if a.tiny else {}
  model = BertPretraining(**shape).to(device)
  per_row = round(a.packing_factor)
  batch = bert_batch(a.batch, n, predictions, per_row, device, model.words.num_embeddings)
  forward = torch.compile(model) if a.compile else model
  if a.optimizer == "lars_lamb":  # the 8-GPU flagfile's LAMB
    optimizer = LAMB(split_params(model), lr=4.25e-4, betas=(0.9, 0.999), epsilon=1e-6, weight_decay=0.01)
  else:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, fused=device.type == "cuda")
  step = train_step(model, optimizer, lambda: forward(**batch), device, dtype, clip=1.0)
  return timed(step, device, a.warmup, a.steps), a.batch * per_row


def peer_name(task, rows, packing_factor, precision):
  """The name of a peer configuration given by flags (with --like: the name prepare_step.py wrote)."""
  packed = task == "bert" and packing_factor != 1
  return f"{task}_{'packed_r' if packed else 'b'}{rows}_{precision}"


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--like", metavar="STEP.step.json", help="time the peer of this exported step (its task, rows, "
                 "packing factor and precision, as prepare_step.py wrote them)")
  p.add_argument("--task", choices=("resnet", "bert"))
  p.add_argument("--batch", type=int, help="rows per step (ResNet: images; BERT: sequences, or packed rows)")
  p.add_argument("--packing_factor", type=float, default=1.0, help="BERT: sequences per packed row (1: unpacked)")
  p.add_argument("--precision", choices=("bf16", "fp16", "fp32"), default="bf16")
  p.add_argument("--optimizer", choices=("lars_lamb", "sgd_adamw"), default="lars_lamb",
                 help="lars_lamb: the closed division's LARS (ResNet) and LAMB (BERT); sgd_adamw: torch.optim's")
  p.add_argument("--device", default="cuda")
  p.add_argument("--compile", action="store_true", help="torch.compile the model")
  p.add_argument("--tiny", action="store_true", help="small shapes, to check the code on a CPU")
  p.add_argument("--warmup", type=int, default=5)
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--out", help="folder for torch_PEER[_compiled].json")
  a = p.parse_args(argv)
  a.peer = None
  if a.like:
    with open(a.like) as f:
      spec = json.load(f)
    a.task, a.batch, a.precision = spec["task"], spec["rows"], spec["precision"]
    a.packing_factor = spec["samples"] / spec["rows"]
    a.peer = spec["peer"]
  if not (a.task and a.batch):
    p.error("give --like=STEP.step.json, or --task and --batch")
  if a.task == "bert" and not (a.packing_factor == 1 or a.packing_factor == round(a.packing_factor) > 1):
    p.error(f"--packing_factor={a.packing_factor}: the peer packs a whole number of sequences per row")
  device = torch.device(a.device)
  dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[a.precision]
  torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
  torch.backends.cudnn.benchmark = True
  peer = a.peer or peer_name(a.task, a.batch, a.packing_factor, a.precision)
  mode = "compiled" if a.compile else "eager"
  record = {"peer": peer, "mode": mode, "optimizer": a.optimizer, "status": "failed", "torch": torch.__version__,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}
  try:
    seconds, samples = (resnet_peer if a.task == "resnet" else bert_peer)(a, device, dtype)
    record.update(status="ok", ms_median=round(seconds * 1e3, 3), samples=samples,
                  samples_per_s=round(samples / seconds, 1))
    print(f"torch {peer} {mode} ({a.optimizer}) on {record['device']}: {seconds * 1e3:.1f} ms median step, "
          f"{samples / seconds:,.1f} samples/s", flush=True)
  except torch.OutOfMemoryError:
    record["status"] = "out of memory"
    print(f"torch {peer} {mode}: out of memory", flush=True)
  if a.out:
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, f"torch_{peer}{'_compiled' if a.compile else ''}.json"), "w") as f:
      json.dump(record, f, indent=1)
  return 0 if record["status"] == "ok" else 1


if __name__ == "__main__":
  sys.exit(main())
