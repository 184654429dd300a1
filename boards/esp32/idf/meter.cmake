# Included by each board directory here after the stock board of the same
# name (docs/BUILD.md §2): appends the meter's ESP-IDF settings, and the
# partition table by its absolute path, to the stock SDKCONFIG_DEFAULTS.
# Later files of that list override earlier ones.
list(APPEND SDKCONFIG_DEFAULTS ${CMAKE_CURRENT_LIST_DIR}/sdkconfig.meter)
file(WRITE ${CMAKE_BINARY_DIR}/sdkconfig.meter_table
    "CONFIG_PARTITION_TABLE_CUSTOM_FILENAME=\"${CMAKE_CURRENT_LIST_DIR}/partitions-meter.csv\"\n")
list(APPEND SDKCONFIG_DEFAULTS ${CMAKE_BINARY_DIR}/sdkconfig.meter_table)
