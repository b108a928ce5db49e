"""Forward projection through ASTRA. This is the only module of tomobench that imports astra.

Backends, all computing ASTRA's own discretisation of the chosen projection model:

``astra-cpu``
    ``astra.create_sino`` with a CPU projector, one image at a time.
``astra-cuda``
    ``astra.create_sino`` with ASTRA's GPU projector (linear interpolation only).
``matrix``
    ASTRA's projection matrix for the geometry, built once (and kept in the cache folder for
    later processes) and applied to a batch of images as one sparse × dense product: the
    fast CPU path. The product runs over blocks of the matrix's columns, so that the part
    of the batch each block reads stays in the core's cache; every output value is still
    summed in the order of the whole product, so the result is the same to the last bit.
``auto``
    ``astra-cuda`` where ASTRA sees a GPU and the model is linear, except for the evaluation
    splits (val, test), which are always made on the CPU so that they are the same bytes on
    every machine; otherwise ``matrix``, or ``astra-cpu`` when the matrix would not fit in
    :data:`MATRIX_BYTES_LIMIT` (a rule of the geometry alone, the same on every machine).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import zipfile
from pathlib import Path

import numpy as np
import scipy.sparse as sparse

from tomobench._atomic import atomic_path
from tomobench.errors import PhysicsError, TomobenchError
from tomobench.physics.geometry import ParallelGeometry

BACKENDS = ("auto", "astra-cuda", "astra-cpu", "matrix")
MODELS = ("line", "strip", "linear")
FBP_FILTERS = ("ram-lak", "shepp-logan", "cosine", "hamming", "hann")
MATRIX_BYTES_LIMIT = 2 * 1024**3
"""Largest projection matrix (float32 values + int32 indices) that ``auto`` will build."""
_MATRIX_BATCH = 128  # images per sparse product: bounds the dense temporaries
_TRANSPOSE_TILE = 128  # rows of a product per step of its transposed copy (32 KiB at batch 64)
_BLOCK_COLUMNS = 1024  # matrix columns per block: at batch 64, a block reads 256 KiB of the batch


def _astra():
    try:
        import astra
    except ImportError as error:  # pragma: no cover - astra is a hard dependency
        msg = (
            "tomobench needs the ASTRA toolbox: `pip install astra-toolbox` "
            "(or `conda install -c astra-toolbox astra-toolbox`)"
        )
        raise ImportError(msg) from error
    return astra


@functools.cache
def cuda_available() -> bool:
    """Whether ASTRA was built with CUDA and sees a GPU."""
    astra = _astra()
    try:
        return bool(astra.use_cuda())
    except Exception:
        return False


def estimated_matrix_bytes(geometry: ParallelGeometry) -> int:
    """An upper estimate of the projection matrix's size in memory (8 bytes a non-zero).

    A ray of the linear model meets about two pixels per image row it crosses.
    """
    rays = geometry.angles * geometry.detector
    return 8 * rays * 2 * geometry.size * max(1, int(np.ceil(1 / geometry.spacing)))


EVALUATION_SPLITS = ("val", "test")
"""Splits whose sinograms ``auto`` always makes on the CPU, so that they are the same bytes on
every machine, GPU or not."""


def resolve_backend(
    backend: str, *, geometry: ParallelGeometry, model: str = "linear", split: str | None = None
) -> str:
    """The concrete backend that ``backend`` stands for on this machine (for ``split``:
    ``auto`` resolves to a CPU backend for the evaluation splits, val and test, whatever
    the machine, and may use a GPU for the others)."""
    if backend not in BACKENDS:
        msg = f"unknown projector backend {backend!r} (allowed: {', '.join(BACKENDS)})"
        raise PhysicsError(msg)
    if backend != "auto":
        if backend == "astra-cuda" and not cuda_available():
            msg = "backend 'astra-cuda' asked for, but ASTRA sees no CUDA GPU here"
            raise PhysicsError(msg)
        return backend
    if split not in EVALUATION_SPLITS and model == "linear" and cuda_available():
        return "astra-cuda"
    if estimated_matrix_bytes(geometry) <= MATRIX_BYTES_LIMIT:
        return "matrix"
    return "astra-cpu"


class Projector:
    """Forward projector for one geometry, projection model and backend.

    ``forward`` maps images (H, W) or (B, H, W) to float32 sinograms (A, D) or (B, A, D),
    angle axis first. Use :func:`get_projector` to share one instance per process.
    """

    def __init__(
        self, geometry: ParallelGeometry, *, model: str = "linear", backend: str = "auto"
    ) -> None:
        if model not in MODELS:
            msg = f"unknown projection model {model!r} (allowed: {', '.join(MODELS)})"
            raise PhysicsError(msg)
        self.geometry = geometry
        self.model = model
        self.backend = resolve_backend(backend, geometry=geometry, model=model)
        if self.backend == "astra-cuda" and model != "linear":
            msg = f"backend 'astra-cuda' has only the linear model, not {model!r}"
            raise PhysicsError(msg)
        self._matrix: sparse.csr_matrix | None = None
        self._blocks: dict[bool, tuple[tuple[int, int], list]] = {}  # transpose → shape, blocks
        self._projector_id: int | None = None

    def __repr__(self) -> str:
        return f"Projector({self.geometry!r}, model={self.model!r}, backend={self.backend!r})"

    def __del__(self) -> None:
        if getattr(self, "_projector_id", None) is not None:
            try:
                _astra().projector.delete(self._projector_id)
            except Exception:
                pass

    # -- ASTRA objects ----------------------------------------------------------------

    def _fine_geometries(self) -> tuple[dict, dict]:
        """ASTRA volume and projection geometry on the oversampled grid."""
        astra = _astra()
        g = self.geometry
        n = g.oversample
        half = g.size / 2
        volume = astra.create_vol_geom(g.size * n, g.size * n, -half, half, -half, half)
        projection = astra.create_proj_geom(
            "parallel", g.spacing / n, g.detector * n, g.angle_values
        )
        return volume, projection

    def _astra_projector(self) -> int:
        if self._projector_id is None:
            volume, projection = self._fine_geometries()
            kind = "cuda" if self.backend == "astra-cuda" else self.model
            self._projector_id = _astra().create_projector(kind, projection, volume)
        return self._projector_id

    @property
    def matrix(self) -> sparse.csr_matrix:
        """The system matrix (A·D, n²·H·W) in float32: ASTRA's matrix for the image rendered
        n = ``oversample`` times finer and a detector n× finer, composed with bin averaging
        (detector)

        Built once per geometry and model (about 1 s at 128², 180 angles) and kept in the
        cache folder (``matrices/`` under ``TOMOBENCH_DATA_DIR`` or the OS cache), so that
        later processes — every worker of a parallel build — load it instead. Projections
        use it cut into blocks of columns, after which it is let go; asking for it again
        loads it again.
        """
        if self._matrix is None:
            path = self._matrix_path()
            self._matrix = _load_matrix(path)
            if self._matrix is None:
                self._matrix = self._build_matrix()
                _save_matrix(path, self._matrix)
        return self._matrix

    def _matrix_path(self) -> Path:
        from tomobench.datasets import cache_dir

        key = f"{self.geometry!r} {self.model} astra {_astra().__version__} rendered"
        digest = hashlib.sha256(key.encode()).hexdigest()[:24]
        return cache_dir() / "matrices" / f"{digest}.npz"

    def _build_matrix(self) -> sparse.csr_matrix:
        astra = _astra()
        volume, projection = self._fine_geometries()
        projector_id = astra.create_projector(self.model, projection, volume)
        matrix_id = astra.projector.matrix(projector_id)
        try:
            fine = astra.matrix.get(matrix_id).tocsr()
        finally:
            astra.matrix.delete(matrix_id)
            astra.projector.delete(projector_id)
        n = self.geometry.oversample
        if n > 1:
            binning = sparse.kron(
                sparse.identity(self.geometry.angles, format="csr"),
                _replication(self.geometry.detector, n).T / n,
                format="csr",
            )
            fine = binning @ fine
        matrix = sparse.csr_matrix(fine, dtype=np.float32)
        matrix.sum_duplicates()
        matrix.sort_indices()
        rows = self.geometry.angles * self.geometry.detector
        if matrix.shape != (rows, self.geometry.size**2 * n**2):
            msg = f"ASTRA's matrix has shape {matrix.shape} for {self.geometry!r}"
            raise PhysicsError(msg)
        return matrix

    # -- projection ---------------------------------------------------------------------

    def forward(self, images: np.ndarray) -> np.ndarray:
        """Sinograms of one image (H, W) → (A, D) or a batch (B, H, W) → (B, A, D); with
        ``oversample`` n > 1, images rendered n× finer, (nH, nW)."""
        batch, single = self._as_batch(images, self.geometry.rendered_shape, "images")
        if self.backend == "matrix":
            sinograms = self._product(batch, self.geometry.sinogram_shape, transpose=False)
        else:
            sinograms = np.stack([self._forward_astra(image) for image in batch])
        return sinograms[0] if single else sinograms

    def forward_channels(self, cube: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Sinograms of every channel of a hyperspectral cube: (H, W, C) → (A, D, C), each
        channel's equal to ``forward`` of that channel to the bit, written into ``out``
        (float32, C order) if given. The matrix backend takes the cube as it lies in
        memory, its pixels × channels being the columns of one product, and adds straight
        into the output: no transposed copy either way."""
        cube = np.asarray(cube, dtype=np.float32)
        if cube.ndim != 3 or cube.shape[:2] != self.geometry.rendered_shape:
            msg = f"a cube must have shape (*{self.geometry.rendered_shape}, C), got {cube.shape}"
            raise PhysicsError(msg)
        channels = cube.shape[2]
        shape = (*self.geometry.sinogram_shape, channels)
        if out is None:
            out = np.empty(shape, dtype=np.float32)
        elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
            msg = f"out must be a C-ordered float32 array of shape {shape}"
            raise PhysicsError(msg)
        if self.backend != "matrix":
            out[...] = np.moveaxis(self.forward(np.moveaxis(cube, 2, 0)), 0, 2)
            return out
        columns = np.ascontiguousarray(cube).reshape(-1, channels)
        self._apply(columns, transpose=False, out=out.reshape(-1, channels))
        return out

    def _forward_astra(self, image: np.ndarray) -> np.ndarray:
        astra = _astra()
        n = self.geometry.oversample
        sinogram_id, sinogram = astra.create_sino(image, self._astra_projector())
        astra.data2d.delete(sinogram_id)
        if n > 1:
            sinogram = sinogram.reshape(self.geometry.angles, self.geometry.detector, n).mean(-1)
        return sinogram.astype(np.float32, copy=False)


    def backward(self, sinograms: np.ndarray) -> np.ndarray:
        """Backprojection (the transpose of ``forward``): (A, D) → (H, W) or (B, A, D) →
        (B, H, W), float32."""
        sinograms, single = self._as_batch(sinograms, self.geometry.sinogram_shape, "sinograms")
        if self.backend == "matrix":
            images = self._product(sinograms, self.geometry.rendered_shape, transpose=True)
        else:
            self._require_plain_grid("backprojection")
            astra = _astra()
            images = np.empty((len(sinograms), *self.geometry.image_shape), dtype=np.float32)
            for index, sinogram in enumerate(sinograms):
                volume_id, images[index] = astra.create_backprojection(
                    sinogram, self._astra_projector()
                )
                astra.data2d.delete(volume_id)
        return images[0] if single else images

    def fbp(self, sinograms: np.ndarray, *, filter: str = "ram-lak") -> np.ndarray:
        """Filtered backprojection by ASTRA (``FBP`` on the CPU, ``FBP_CUDA`` on a GPU),
        one sinogram at a time: (A, D) → (H, W) or (B, A, D) → (B, H, W), float32."""
        if filter not in FBP_FILTERS:
            msg = f"unknown FBP filter {filter!r} (allowed: {', '.join(FBP_FILTERS)})"
            raise PhysicsError(msg)
        self._require_plain_grid("FBP")
        sinograms, single = self._as_batch(sinograms, self.geometry.sinogram_shape, "sinograms")
        astra = _astra()
        volume, projection = self._fine_geometries()
        sinogram_id = astra.data2d.create("-sino", projection)
        volume_id = astra.data2d.create("-vol", volume)
        gpu = self.backend == "astra-cuda"
        config = astra.astra_dict("FBP_CUDA" if gpu else "FBP")
        config["ProjectionDataId"] = sinogram_id
        config["ReconstructionDataId"] = volume_id
        config["option"] = {"FilterType": filter}
        if gpu:
            config["ProjectorId"] = self._astra_projector()
        else:
            cpu_id = astra.create_projector(self.model, projection, volume)
            config["ProjectorId"] = cpu_id
        algorithm_id = astra.algorithm.create(config)
        images = np.empty((len(sinograms), *self.geometry.image_shape), dtype=np.float32)
        try:
            for index, sinogram in enumerate(sinograms):
                astra.data2d.store(sinogram_id, sinogram)
                astra.algorithm.run(algorithm_id)
                images[index] = astra.data2d.get_shared(volume_id)
        finally:
            astra.algorithm.delete(algorithm_id)
            astra.data2d.delete([sinogram_id, volume_id])
            if not gpu:
                astra.projector.delete(cpu_id)
        return images[0] if single else images

    def _require_plain_grid(self, what: str) -> None:
        if self.geometry.oversample != 1:
            msg = f"{what} works on the image grid: use a geometry with oversample=1"
            raise PhysicsError(msg)

    @staticmethod
    def _as_batch(array: np.ndarray, shape: tuple[int, int], what: str):
        array = np.asarray(array)
        single = array.ndim == 2
        batch = array[None] if single else array
        if batch.ndim != 3 or batch.shape[1:] != shape:
            msg = f"{what} must have shape {shape} or (B, *{shape}), got {array.shape}"
            raise PhysicsError(msg)
        return batch.astype(np.float32, copy=False), single

    def _product(self, batch: np.ndarray, shape, *, transpose: bool) -> np.ndarray:
        """The matrix (or its transpose) applied to each item of ``batch`` (flattened)."""
        out = np.empty((len(batch), *shape), dtype=np.float32)
        rows = out.reshape(len(batch), -1)
        for start in range(0, len(batch), _MATRIX_BATCH):
            part = batch[start : start + _MATRIX_BATCH]
            columns = np.ascontiguousarray(part.reshape(len(part), -1).T)
            product = self._apply(columns, transpose=transpose)
            _copy_transposed(product, rows[start : start + len(part)])
        return out

    def _apply(
        self, columns: np.ndarray, *, transpose: bool, out: np.ndarray | None = None
    ) -> np.ndarray:
        """The matrix (or its transpose) times ``columns`` (values × k, float32, C order),
        into ``out`` (rows × k, float32, C order) if given."""
        if _matvecs is None:  # pragma: no cover - scipy without its CSR kernel
            product = (self.matrix.T if transpose else self.matrix) @ columns
            if out is None:
                return product
            out[...] = product
            return out
        matrix_shape, blocks = self._blocks_of(transpose)
        return _blocked(matrix_shape[0], blocks, columns, out=out)

    def _blocks_of(self, transpose: bool):
        """The matrix (or its transpose) in blocks of columns, made once; the whole matrix
        is then let go, so that a process does not hold it twice."""
        if transpose not in self._blocks:
            matrix = self.matrix.T.tocsr() if transpose else self.matrix
            self._blocks[transpose] = (matrix.shape, _column_blocks(matrix, _BLOCK_COLUMNS))
            if len(self._blocks) == 2 or not transpose:
                self._matrix = None
        return self._blocks[transpose]


# scipy's kernel of CSR × dense, which adds into its output: the only private function of a
# dependency that tomobench uses, because its public product has no output to add into, and
# the product a block of columns at a time is 3-4 times faster than the whole matrix's
# (docs/benchmarks.md); tests/test_projector.py fails if scipy moves it
try:
    from scipy.sparse._sparsetools import csr_matvecs as _matvecs
except ImportError:  # pragma: no cover - the plain product gives the same result, slower
    _matvecs = None


def _column_blocks(matrix: sparse.csr_matrix, width: int) -> list[tuple[int, sparse.csr_matrix]]:
    """``matrix`` cut into blocks of ``width`` columns (first column, block), each with its
    column indices sorted as in ``matrix``."""
    blocks = []
    for first in range(0, matrix.shape[1], width):
        block = matrix[:, first : first + width].tocsr()
        block.sort_indices()
        if block.nnz:
            blocks.append((first, block))
    return blocks


def _blocked(rows: int, blocks, columns: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """A matrix of ``rows`` rows, cut into ``blocks``, applied to ``columns``: one block of
    columns after the other, each adding into the same output (``out`` if given: rows ×
    k, float32, C order), so that every output value receives its terms in the order of the
    whole product (CSR rows with sorted columns) and equals ``matrix @ columns`` bit for
    bit."""
    count = columns.shape[1]
    if out is None:
        out = np.zeros((rows, count), dtype=np.float32)
    else:  # the kernel adds into out's memory, which it takes to be exactly this
        if out.shape != (rows, count) or out.dtype != np.float32 or not out.flags.c_contiguous:
            msg = f"the output of a blocked product must be C-ordered float32 {(rows, count)}"
            raise ValueError(msg)
        out[...] = 0.0
    flat = out.reshape(-1)
    columns = columns.astype(np.float32, copy=False)
    for first, block in blocks:
        part = columns[first : first + block.shape[1]]
        _matvecs(
            block.shape[0], block.shape[1], count,
            block.indptr, block.indices, block.data, part.reshape(-1), flat,
        )
    return out


def _copy_transposed(source: np.ndarray, target: np.ndarray, tile: int = _TRANSPOSE_TILE) -> None:
    """``target[...] = source.T`` for a tall, narrow ``source`` (values, batch), a tile of
    rows at a time: numpy's own strided copy of the whole transpose runs ten times slower
    (0.14 against 0.013 ms a sinogram of shapes-128 at batch 64)."""
    for first in range(0, source.shape[0], tile):
        target[:, first : first + tile] = source[first : first + tile].T


def _load_matrix(path: Path) -> sparse.csr_matrix | None:
    """A cached matrix, or None if there is none or it cannot be read whole."""
    try:
        with np.load(path) as saved:
            matrix = sparse.csr_matrix(
                (saved["data"], saved["indices"], saved["indptr"]), shape=tuple(saved["shape"])
            )
        matrix.check_format(full_check=False)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    return matrix


def _save_matrix(path: Path, matrix: sparse.csr_matrix) -> None:
    """Keep a matrix for later processes; written whole or not at all (a cache: a failure to
    write it only means the next process builds the matrix again)."""
    with contextlib.suppress(OSError, TomobenchError):
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as temporary:
            np.savez(
                temporary,
                data=matrix.data,
                indices=matrix.indices,
                indptr=matrix.indptr,
                shape=np.array(matrix.shape),
            )


def _replication(size: int, factor: int) -> sparse.csr_matrix:
    """(size·factor, size) matrix that repeats each entry ``factor`` times."""
    return sparse.kron(
        sparse.identity(size, format="csr"), np.ones((factor, 1)), format="csr"
    )


@functools.lru_cache(maxsize=8)
def get_projector(
    geometry: ParallelGeometry, *, model: str = "linear", backend: str = "auto"
) -> Projector:
    """A projector shared within this process (its matrix is built once)."""
    return Projector(geometry, model=model, backend=backend)
