"""Inputs: fetch the dataset and the model (from the hub, a local folder or the embedded default) and prepare them.

download_dataset and download_model run this stage. It imports only the shared top-level modules.
"""
