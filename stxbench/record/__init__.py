"""The record of a run and where its numbers came from: the schema, the record made of a run's
outcome, provenance, the code identity and the run's identity."""
