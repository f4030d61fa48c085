"""The model-family zoo: torchvision and Hugging Face architectures with seeded
random weights (bench/zoo/models.py), exported to ONNX with a dynamic batch
(bench/zoo/export.py), for the GPU tests (python/tests/test_zoo_gpu.py) and the
benchmark (bench/zoo.py)."""
