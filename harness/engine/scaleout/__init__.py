"""Running cells elsewhere: the Ray executor, ray.data generation, Ray Train and torchrun training."""
