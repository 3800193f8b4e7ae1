"""SplitLLM: cutting decoders into user / edge / cloud tiers, tiered LoRA training, memory."""
