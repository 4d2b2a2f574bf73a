"""The batching engine: slots and one loop per loaded model, sampler chains, a slot's text out, embeddings, serving counters."""
