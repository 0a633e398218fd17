"""Side-by-side training of lstmkit and the TensorFlow built-in."""
