// Checking a zip archive's structure before LibTorch reads it.
//
// LibTorch's reader of torch.save archives (miniz behind
// caffe2::serialize::PyTorchStreamReader) trusts some of the offsets and
// sizes a damaged archive gives, and crashes on them (found by the pth fuzz
// target: an out-of-bounds read in mz_zip_reader_read_central_dir). The
// server reads model.pth at load; a damaged file must be refused, not
// crash the server. So every offset and size that locates the central
// directory, its entries and their data is checked here first.
//
// Internal to runtime/ and its tests (no LibTorch).
#ifndef CLIPSERVE_RUNTIME_ZIP_CHECK_H_
#define CLIPSERVE_RUNTIME_ZIP_CHECK_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace clipserve::runtime {

// OK when `archive` is a single-disk zip archive (zip64 included) whose end
// of central directory record ends the file (after its comment), whose
// central directory lies before it and holds exactly the entries it counts,
// each well-formed (name, extra fields and comment within it, zip64 sizes
// and offsets where the 32-bit fields say so), stored or deflated, with its
// local header and data lying before the central directory. Otherwise
// INVALID_ARGUMENT saying what is wrong, with the byte offset.
absl::Status CheckZipStructure(absl::string_view archive);

// CheckZipStructure, then the pickle of a torch.save archive (its stored
// entry ".../data.pkl", when there is one): every length-prefixed argument
// (strings, bytes, long integers, frames) must fit in the bytes left.
// LibTorch's unpickler allocates and zero-fills what a length says before
// it reads, so one damaged 4-byte length cost 4 GiB of memory at load (the
// pth fuzz target found it). Opcodes are not checked otherwise: LibTorch
// refuses the ones it does not know.
absl::Status CheckTorchSaveArchive(absl::string_view archive);

}  // namespace clipserve::runtime

#endif  // CLIPSERVE_RUNTIME_ZIP_CHECK_H_
