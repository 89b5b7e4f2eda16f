"""Torch-free face geometry shared by training and the demo: landmarks, crops, landmark images, video I/O."""
