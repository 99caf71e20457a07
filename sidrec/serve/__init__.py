"""Serving a trained model: a recommend API and a web page over one results folder.

    python -m sidrec.serve --results results/ml-100k            # the model chosen on valid
    python -m sidrec.serve --results results/ml-100k --model rl --device cuda

Modules, one concept each: `artifacts` (what a results folder says: which model, its
history limit, provenance), `catalogue` (item ids and titles: lookup and search),
`batcher` (concurrent requests gathered into one decoder batch), `engine` (a batch of
histories -> top-k items, history excluded), `app` (the FastAPI app: endpoints, error
replies, body limit, the page), `__main__` (command line, uvicorn).
"""
