"""Online controllers of the uplink: FDMA bandwidth allocation and Lyapunov (TSFA) control."""
