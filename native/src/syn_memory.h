// The reader's memory of the SYNs it read, for arming on the SYN (native/README.md, "Arming on the SYN").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fg {

/**
 * Which (connection, sequence number) pairs the reader read a SYN or SYN-ACK with lately: two
 * generations of a Bloom filter (2 MiB each, six probes), the older dropped each time the newer is
 * kSynMemoryMs old, so a pair noted at any time is remembered for at least kSynMemoryMs after. It
 * never forgets a pair early; a pair it was never given may read as seen (with 2,000 new
 * connections a second, two pairs each, about 1 in 20,000; with 5,000, 1 in 200), which only
 * costs that connection the reader's arm. Until Reserve, every pair reads as seen.
 */
class SynMemory {
 public:
  /** Takes the memory (4 MiB, zeroed: about 15 ms here, so not on the reader thread). */
  void Reserve(int64_t nowMs);
  /** Whether the pair was noted in the last kSynMemoryMs (or reads so), then notes it. */
  bool Remember(const std::u16string& key, uint32_t seq, int64_t nowMs);
  /** Notes the pair again if it is remembered: its memory lasts kSynMemoryMs from now. */
  void Renew(const std::u16string& key, uint32_t seq, int64_t nowMs);

 private:
  struct Probe {
    uint64_t h1, h2;
  };
  static Probe ProbeOf(const std::u16string& key, uint32_t seq);
  void Age(int64_t nowMs);
  bool In(const std::vector<uint64_t>& bits, Probe p) const;
  void Set(std::vector<uint64_t>* bits, Probe p);

  std::vector<uint64_t> current_, previous_;
  int64_t currentSince_ = 0;
};

}  // namespace fg
