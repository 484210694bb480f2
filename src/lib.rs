//! npyfs: mount many NumPy `.npy` parts as one virtual `.npy` file.
