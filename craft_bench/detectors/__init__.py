"""GenEval detection backends on real models: Mask2Former through mmdetection (`mmdet`, the official one) or
transformers (`hf`), and GenEval's CLIP colour classifier that both use. Registered in ``craft_bench.registry``."""
