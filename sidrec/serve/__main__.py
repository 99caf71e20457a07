"""Serve a trained model: the recommend API and its page.

    python -m sidrec.serve --results results/ml-100k                 # CPU, model chosen on valid
    python -m sidrec.serve --results results/ml-100k --model rl --port 8000
    python -m sidrec.serve --results results/ml-100k --device cuda   # on a GPU
    python -m sidrec.serve --results results/ml-100k --max-batch 1   # no gathering (a baseline)
    python -m sidrec.serve --results results/ml-100k --decode beam   # no exactness certificate
    python -m sidrec.serve --results results/ml-100k --device cuda --decode beam   # + CUDA graphs: fastest

Then open http://127.0.0.1:8000/ (the page), /docs (OpenAPI), or
    curl -s localhost:8000/recommend -H 'content-type: application/json' -d '{"history": [0, 1], "k": 5}'
"""
from __future__ import annotations

import argparse
import sys

from ..errors import InputError


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m sidrec.serve", description=__doc__.split("\n\n")[0])
    what = ap.add_argument_group("what to serve")
    what.add_argument("--results", required=True,
                      help="a pipeline's results/DATASET folder (or results/DATASET/seed-S)")
    what.add_argument("--seed", type=int, default=None, help="which seed's run (default: the lowest there)")
    what.add_argument("--model", choices=("sft", "rl"), default=None,
                      help="default: the one with the better valid NDCG@10 in metrics.tsv")
    what.add_argument("--device", default="cpu", help='"cpu" (default), "cuda", "cuda:N"')
    what.add_argument("--max-history", type=int, default=None,
                      help="most recent items a prompt keeps (default: the run's own limit)")
    what.add_argument("--beam-width", type=int, default=50, help="beams of the constrained search")
    what.add_argument("--decode", choices=("exact", "beam"), default="exact",
                      help="exact (default): the certified top-k, as predict; beam: the plain beam "
                           "search, fewer passes per batch, may miss an item the beam pruned")
    what.add_argument("--dtype", choices=("bfloat16", "float32"), default=None,
                      help="the model's weights (default: float32 with --decode exact, which then needs "
                           "no float32 rescoring pass; with beam, bfloat16 on CUDA, float32 on the CPU)")
    what.add_argument("--no-cuda-graphs", dest="cuda_graphs", action="store_false",
                      help="with --decode beam on CUDA: decode eagerly instead of replaying CUDA graphs "
                           "(which are captured at start, one per batch shape: some seconds before the server is ready)")
    where = ap.add_argument_group("where")
    where.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    where.add_argument("--port", type=int, default=8000)
    batching = ap.add_argument_group("batching of concurrent requests")
    batching.add_argument("--max-batch", type=int, default=32, help="requests per decoder batch (1: no gathering)")
    batching.add_argument("--max-wait-ms", type=float, default=5.0,
                          help="longest a request waits for others to join its batch")
    batching.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    import uvicorn

    from .app import create_app
    from .load import load_service

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        service = load_service(args.results, model=args.model, device=args.device, max_batch=args.max_batch,
                               max_wait_ms=args.max_wait_ms, max_history=args.max_history,
                               beam_width=args.beam_width, seed=args.seed, decode=args.decode,
                               dtype=args.dtype, cuda_graphs=args.cuda_graphs)
    except (InputError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    info = service.info
    print(f"serving {info['model']} of {info['dataset']} ({len(service.catalogue)} items, history limit "
          f"{service.max_history}) on {info['device']} at http://{args.host}:{args.port}/", flush=True)
    try:
        uvicorn.run(create_app(service), host=args.host, port=args.port, log_level="warning")
    finally:
        service.batcher.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
