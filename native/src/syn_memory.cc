#include "syn_memory.h"

#include <algorithm>
#include <functional>

#include "queue_internal.h"

namespace fg {
namespace {

constexpr unsigned kBitsLog2 = 24;  // 2^24 bits: 2 MiB a generation
constexpr uint64_t kBitMask = (uint64_t{1} << kBitsLog2) - 1;
constexpr int kProbes = 6;

uint64_t Mix(uint64_t x) {  // splitmix64's finaliser
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

SynMemory::Probe SynMemory::ProbeOf(const std::u16string& key, uint32_t seq) {
  uint64_t h1 = Mix(std::hash<std::u16string>{}(key) ^ (static_cast<uint64_t>(seq) << 17));
  return {h1, Mix(h1 + 0x9e3779b97f4a7c15ULL) | 1};
}

void SynMemory::Reserve(int64_t nowMs) {
  current_.assign((kBitMask + 1) / 64, 0);
  previous_.assign((kBitMask + 1) / 64, 0);
  currentSince_ = nowMs;
}

void SynMemory::Age(int64_t nowMs) {
  if (nowMs - currentSince_ < kSynMemoryMs) return;
  // The older generation holds pairs noted more than kSynMemoryMs ago; the newer becomes it, unless
  // it is that old too.
  if (nowMs - currentSince_ < 2 * kSynMemoryMs) std::swap(current_, previous_);
  else std::fill(previous_.begin(), previous_.end(), 0);
  std::fill(current_.begin(), current_.end(), 0);
  currentSince_ = nowMs;
}

bool SynMemory::In(const std::vector<uint64_t>& bits, Probe p) const {
  for (int i = 0; i < kProbes; i++) {
    uint64_t b = (p.h1 + static_cast<uint64_t>(i) * p.h2) & kBitMask;
    if ((bits[b >> 6] & (uint64_t{1} << (b & 63))) == 0) return false;
  }
  return true;
}

void SynMemory::Set(std::vector<uint64_t>* bits, Probe p) {
  for (int i = 0; i < kProbes; i++) {
    uint64_t b = (p.h1 + static_cast<uint64_t>(i) * p.h2) & kBitMask;
    (*bits)[b >> 6] |= uint64_t{1} << (b & 63);
  }
}

bool SynMemory::Remember(const std::u16string& key, uint32_t seq, int64_t nowMs) {
  if (current_.empty()) return true;
  Age(nowMs);
  Probe p = ProbeOf(key, seq);
  bool seen = In(current_, p) || In(previous_, p);
  Set(&current_, p);
  return seen;
}

void SynMemory::Renew(const std::u16string& key, uint32_t seq, int64_t nowMs) {
  if (current_.empty()) return;
  Age(nowMs);
  Probe p = ProbeOf(key, seq);
  if (In(current_, p) || In(previous_, p)) Set(&current_, p);
}

}  // namespace fg
