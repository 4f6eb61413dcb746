// Join-free work sharing for batch-1 layers (item_team.cpp).
//
// run_items(count, fn) calls fn(item, slot) once for every item in [0, count): the calling
// thread claims items one by one, and so do up to get_num_threads() - 1 helper threads that
// happen to be awake. The caller never waits for a helper to wake up or to arrive at a
// barrier: it waits only for the items a helper has already claimed. So a helper that is
// asleep, or has no CPU on a busy machine, costs the call nothing (the caller does its
// items), where an OpenMP region would wait for every team member to enter and leave.
// slot: 0 for the caller, 1 .. for helpers, < run_items_slots(); per-participant scratch is
// indexed by it. fn must not throw out (the first exception is rethrown to the caller after
// every claimed item has finished), must not start OpenMP regions of more than one thread,
// and items must write disjoint outputs. Items run in no particular order or thread.
#pragma once
#include <cstdint>
#include <type_traits>
#include <vector>

namespace fastconv::cpu {

using ItemFn = void (*)(void* ctx, int64_t item, int slot);

void run_items_raw(int64_t count, ItemFn fn, void* ctx);

// Participants a call may use: get_num_threads() capped by the usable CPUs (1 in a forked
// child, whose parent's helpers do not exist there, and inside an OpenMP region).
int run_items_slots();

// Whether batch-1 layers use the item team rather than OpenMP regions: FASTCONV_ITEM_TEAM=1
// or 0 (read once), default on. A switch because the two measured differently on a busy and
// on a quiet machine (benchmarks/RESULTS.md, 2026-12-06 Zen 4, lead).
bool item_team_enabled();

template <typename Fn>
void run_items(int64_t count, Fn&& fn) {
  run_items_raw(count, [](void* ctx, int64_t item, int slot) { (*static_cast<std::remove_reference_t<Fn>*>(ctx))(item, slot); },
                (void*)&fn);
}

// Test hook: items the helpers have run since the last call (0 where none was awake).
int64_t take_helper_items();

// Test hook: runs `count` items of `item_us` microseconds (sleeping) through run_items and
// returns, per item, the slot that ran it (-1: never ran, < -1: ran more than once); item
// `throw_item` (-1: none) throws std::invalid_argument instead.
std::vector<int> item_team_selftest(int64_t count, int64_t item_us, int64_t throw_item);

}  // namespace fastconv::cpu
