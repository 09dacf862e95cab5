"""Neurons: the neuron contract, the neuron families, the LIF family's shared pieces, compiled
neuron layers and the parity check of every implementation against its family's reference."""
