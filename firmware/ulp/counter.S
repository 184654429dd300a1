# Pulse counter for the ESP32 ULP FSM coprocessor (docs/BATTERY.md §2).
#
# The ULP timer starts this program every sample period while the main CPU
# sleeps. Each run samples the reed contact once, debounces it (a new level
# counts only after SAMPLES consecutive equal samples), counts closing edges
# into `count`, and wakes the CPU once `count` has reached `threshold`.
#
# Shared words: the first six words of RTC slow memory, at fixed offsets so
# the CPU (boards/ulp.py) needs no symbol table. The ULP stores the low 16
# bits of a register (the high half holds the PC of the store), so every
# value is 16 bits and the CPU masks with 0xFFFF.
#   count      closing edges, only ever incremented (wraps at 16 bits)
#   threshold  wake the CPU when (count - threshold) mod 2^16 < 0x8000
#   stable     the debounced level (1 open, 0 closed: pulled-up contact)
#   pending    consecutive samples that differ from `stable`
#   samples    N: samples needed to accept a new level (set by the CPU)
#   magic      MAGIC while this memory holds a running count; lost at power-on

#define RTC_GPIO_IN_REG 0x3ff48424
#define RTC_CNTL_LOW_POWER_ST_REG 0x3ff480c0
#define RDY_FOR_WAKEUP 19
# GPIO34 is RTC_GPIO4; RTC_GPIO_IN holds RTC_GPIOn at bit 14 + n
#define PULSE_BIT 18

  .text
count:     .long 0
threshold: .long 32767
stable:    .long 1
pending:   .long 0
samples:   .long 3
magic:     .long 23063

  .global entry
entry:
  move r3, count                      # r3: base of the shared words
  reg_rd RTC_GPIO_IN_REG, PULSE_BIT, PULSE_BIT
  move r2, r0                         # r2: this sample's level
  ld r1, r3, 8                        # stable
  sub r0, r2, r1
  jump agree, eq
  ld r0, r3, 12                       # pending + 1
  add r0, r0, 1
  st r0, r3, 12
  ld r1, r3, 16                       # samples
  sub r1, r0, r1                      # borrow (ov) while pending < samples
  jump check, ov
  st r2, r3, 8                        # a new stable level
  move r0, 0
  st r0, r3, 12
  move r0, r2
  jumpr check, 1, ge                  # opened: not an edge we count
  ld r0, r3, 0                        # closed: one pulse
  add r0, r0, 1
  st r0, r3, 0
  jump check
agree:
  move r0, 0                          # a bounce is over: start again
  st r0, r3, 12
check:
  ld r0, r3, 0
  ld r1, r3, 4
  sub r0, r0, r1                      # count - threshold, mod 2^16
  jumpr done, 0x8000, ge              # not reached yet
  reg_rd RTC_CNTL_LOW_POWER_ST_REG, RDY_FOR_WAKEUP, RDY_FOR_WAKEUP
  jumpr done, 1, lt                   # CPU awake: it reads the count itself
  wake
done:
  halt
