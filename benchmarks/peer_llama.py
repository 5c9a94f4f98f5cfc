"""The peer: HuggingFace LlamaForCausalLM training on the PyTorch CPU build.

Run by benchmarks/train_throughput.py in its own environment (.venv-bench, with
torch==2.13.0 and transformers), at the same dimensions and optimizer as ours.
Prints one JSON line per measurement.
"""

import argparse
import json
import time

import torch
import transformers


def gemm_peak(dtype, size=2048, repeats=5):
  x = torch.ones(size, size, dtype=dtype)
  x @ x  # pylint: disable=pointless-statement
  start = time.perf_counter()
  for _ in range(repeats):
    x @ x  # pylint: disable=pointless-statement
  return 2 * size**3 * repeats / (time.perf_counter() - start)


def train_throughput(args, bf16: bool) -> float:
  torch.manual_seed(0)
  config = transformers.LlamaConfig(
      vocab_size=args.vocab, hidden_size=args.d_model, intermediate_size=args.d_ff,
      num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.heads,
      head_dim=args.head_dim, max_position_embeddings=args.seq_len, tie_word_embeddings=False)
  model = transformers.LlamaForCausalLM(config)
  optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.0)
  tokens = torch.randint(0, args.vocab, (args.batch, args.seq_len))

  def step():
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
      loss = model(input_ids=tokens, labels=tokens).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)

  step()  # warm-up
  start = time.perf_counter()
  for _ in range(args.steps):
    step()
  return args.steps * args.batch * args.seq_len / (time.perf_counter() - start)


def main():
  parser = argparse.ArgumentParser()
  for name in ('vocab', 'd_model', 'd_ff', 'layers', 'heads', 'head_dim', 'seq_len', 'batch',
               'steps'):
    parser.add_argument(f'--{name}', type=int, required=True)
  parser.add_argument('--name', required=True)
  args = parser.parse_args()
  peaks = {'float32': gemm_peak(torch.float32), 'bfloat16': gemm_peak(torch.bfloat16)}
  for precision in ('float32', 'bfloat16'):
    print(json.dumps({
        'system': f'hf_llama_torch_{torch.__version__}', 'config': args.name,
        'precision': precision + (' (autocast)' if precision == 'bfloat16' else ''),
        'tokens_per_second': train_throughput(args, precision == 'bfloat16'),
        'gemm_peak_flops': peaks[precision], 'torch_threads': torch.get_num_threads()}),
          flush=True)


if __name__ == '__main__':
  main()
