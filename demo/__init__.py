"""The torch-free inference side: the onnxruntime engine and the pipeline behind the app and `heads animate`."""
