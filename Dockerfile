# syntax=docker/dockerfile:1
# codemix GPU image: Debian 12 with Python 3.11 (so the quickstart's Debian packages have the names
# scripts/setup.sh asks for), the project installed by `make setup` (torch 2.13.0 from PyPI is the
# CUDA build and carries its own CUDA runtime), and flash-attn.
#
#   docker build -t codemix .
#   docker run --gpus all --rm -it -v "$PWD/.codemix:/opt/codemix/.codemix" codemix make quickstart
#
# flash-attn is built against the installed torch: pip fetches a prebuilt wheel when one matches
# torch, CUDA and Python, and otherwise compiles it with nvcc. nvcc comes from NVIDIA's Debian 12 CUDA
# repository in a build stage that does not depend on the source tree (a code change does not rebuild
# it), and only the wheel reaches the image, not the multi-GB toolkit. The GPU driver is the host's,
# reached through the NVIDIA container toolkit (--gpus).

ARG PYTHON_IMAGE=python:3.11-bookworm

FROM ${PYTHON_IMAGE} AS flash-attn
# The CUDA version of torch 2.13.0's wheel (torch.version.cuda), as NVIDIA's Debian packages spell it
# and as the toolkit's folder is named; the check below stops the build on a mismatch, printing torch's.
ARG CUDA_PKG=12-8
ARG CUDA_VERSION=12.8
# nvcc jobs take several GB of memory each.
ARG MAX_JOBS=4
ENV CUDA_HOME=/usr/local/cuda-${CUDA_VERSION} \
    PATH=/usr/local/cuda-${CUDA_VERSION}/bin:${PATH}
WORKDIR /build
RUN wget -q https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/cuda-keyring_1.1-1_all.deb \
    && dpkg -i cuda-keyring_1.1-1_all.deb
RUN apt-get update \
    && apt-get install -y --no-install-recommends cuda-nvcc-${CUDA_PKG} cuda-cudart-dev-${CUDA_PKG} cuda-libraries-dev-${CUDA_PKG}
RUN python3.11 -m venv .venv \
    && .venv/bin/pip install torch==2.13.0 ninja packaging psutil wheel setuptools
RUN .venv/bin/python -c "import torch; assert torch.version.cuda == '${CUDA_VERSION}', torch.version.cuda"
RUN MAX_JOBS=${MAX_JOBS} .venv/bin/pip wheel --no-build-isolation --no-deps -w wheels "flash-attn>=2.5"

FROM ${PYTHON_IMAGE}
WORKDIR /opt/codemix
COPY . .
RUN make setup
# The wheel is mounted, not copied, so no layer keeps a copy of it.
RUN --mount=type=bind,from=flash-attn,source=/build/wheels,target=/opt/codemix/wheels \
    .venv/bin/pip install wheels/flash_attn-*.whl
ENV PATH=/opt/codemix/.venv/bin:${PATH}
CMD ["codemix", "--help"]
