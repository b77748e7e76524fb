"""Datasets: synthetic faces from a generator, image folders, recorded measurements."""
