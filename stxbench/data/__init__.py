"""Data: the dataset contract, the splits a protocol's ``[data]`` section selects, reading a
user's data files safely, and training augmentation."""
