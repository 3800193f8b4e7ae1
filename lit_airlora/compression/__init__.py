"""Upload encoders (SOFT, top-k, random-k, SVD truncation) and the maths behind them."""
