# source_hash.sh (sourced): source_hash prints one SHA-256 over what a build compiles (the
# CMakeLists.txt files, the C++ and CUDA sources, headers and .inc files), names and contents in one fixed
# order, run from the repository root: equal hashes mean two trees build the same programs.
source_hash() {
  LC_ALL=C find CMakeLists.txt kernels engine models train analysis tools tests bench examples \
    -type f \( -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' -o -name '*.inc' -o \
    -name CMakeLists.txt \) -print 2>/dev/null | LC_ALL=C sort | xargs sha256sum |
    sha256sum | cut -c1-64
}
