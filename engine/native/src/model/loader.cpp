#include "loader.h"

#include <map>
#include <memory>
#include <stdexcept>

#ifdef _WIN32
#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#else
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

namespace ls {
namespace {

// A read-only memory map of a whole file.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path) : path_(path) {
#ifdef _WIN32
    int wlen = MultiByteToWideChar(CP_UTF8, 0, path.c_str(), -1, nullptr, 0);
    std::wstring wpath(size_t(wlen), L'\0');
    MultiByteToWideChar(CP_UTF8, 0, path.c_str(), -1, wpath.data(), wlen);
    file_ = CreateFileW(wpath.c_str(), GENERIC_READ, FILE_SHARE_READ, nullptr, OPEN_EXISTING,
                        FILE_ATTRIBUTE_NORMAL, nullptr);
    if (file_ == INVALID_HANDLE_VALUE) throw std::runtime_error("cannot open " + path);
    LARGE_INTEGER size;
    GetFileSizeEx(file_, &size);
    size_ = int64_t(size.QuadPart);
    mapping_ = CreateFileMappingW(file_, nullptr, PAGE_READONLY, 0, 0, nullptr);
    if (!mapping_) throw std::runtime_error("cannot map " + path);
    data_ = static_cast<const uint8_t*>(MapViewOfFile(mapping_, FILE_MAP_READ, 0, 0, 0));
    if (!data_) throw std::runtime_error("cannot map " + path);
#else
    fd_ = ::open(path.c_str(), O_RDONLY);
    if (fd_ < 0) throw std::runtime_error("cannot open " + path);
    struct stat st;
    if (fstat(fd_, &st) != 0) throw std::runtime_error("cannot stat " + path);
    size_ = int64_t(st.st_size);
    void* p = size_ ? mmap(nullptr, size_t(size_), PROT_READ, MAP_PRIVATE, fd_, 0) : nullptr;
    if (p == MAP_FAILED) throw std::runtime_error("cannot map " + path);
    data_ = static_cast<const uint8_t*>(p);
#endif
  }
  ~MappedFile() {
#ifdef _WIN32
    if (data_) UnmapViewOfFile(data_);
    if (mapping_) CloseHandle(mapping_);
    if (file_ != INVALID_HANDLE_VALUE) CloseHandle(file_);
#else
    if (data_) munmap(const_cast<uint8_t*>(data_), size_t(size_));
    if (fd_ >= 0) ::close(fd_);
#endif
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  int64_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Tell the OS the pages of [offset, offset+len) are no longer needed, so a
  // converted tensor's source bytes leave the process's resident set.
  void release(int64_t offset, int64_t len) const {
#ifndef _WIN32
    const int64_t page = sysconf(_SC_PAGESIZE);
    int64_t begin = (offset / page) * page;
    int64_t end = offset + len;
    if (end > begin) madvise(const_cast<uint8_t*>(data_) + begin, size_t(end - begin), MADV_DONTNEED);
#else
    (void)offset; (void)len;
#endif
  }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  int64_t size_ = 0;
#ifdef _WIN32
  HANDLE file_ = INVALID_HANDLE_VALUE;
  HANDLE mapping_ = nullptr;
#else
  int fd_ = -1;
#endif
};

}  // namespace

void load_tensors(Model& model, const std::vector<TensorSource>& tensors,
                  const std::function<void(size_t, size_t)>& progress) {
  std::map<std::string, std::unique_ptr<MappedFile>> files;
  size_t done = 0;
  for (const TensorSource& t : tensors) {
    auto it = files.find(t.file);
    if (it == files.end()) it = files.emplace(t.file, std::make_unique<MappedFile>(t.file)).first;
    const MappedFile& f = *it->second;
    if (t.offset < 0 || t.offset + t.byte_length > f.size())
      throw std::runtime_error(f.path() + " is shorter than its header says (truncated file?)");
    const void* data = f.data() + t.offset;
    switch (t.role) {
      case TensorRole::Embedding: model.set_embedding(t.dtype, data); break;
      case TensorRole::LmHead: model.set_lm_head(t.dtype, data); break;
      case TensorRole::FinalNorm: model.set_final_norm(t.dtype, data); break;
      case TensorRole::Norm: model.set_norm(t.layer, t.index, t.dtype, data); break;
      case TensorRole::Projection: model.set_projection(t.layer, t.index, t.dtype, data); break;
      case TensorRole::Bias: model.set_bias(t.layer, t.index, t.dtype, data); break;
    }
    f.release(t.offset, t.byte_length);
    ++done;
    if (progress) progress(done, tensors.size());
  }
}

}  // namespace ls
