"""Loss, accuracy and throughput curves of one or more runs, as one PNG.

  python -m experiments.plot_run runs/demo runs/demo-finetune --output runs/curves.png
"""

import argparse

from lamda_jax.training import plotting


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('runs', nargs='+', help='run workdirs (each with a metrics.jsonl)')
  parser.add_argument('--output', default='curves.png', help='the PNG to write')
  args = parser.parse_args(argv)
  plotting.plot_runs(args.runs, args.output)
  print(args.output)


if __name__ == '__main__':
  main()
