# magi_add_gtest(NAME name SOURCES a.cpp ... LIBS lib ... LABELS cpu|mpi|gpu ...)
# One GoogleTest executable; each TEST becomes a ctest case carrying LABELS.
function(magi_add_gtest)
  cmake_parse_arguments(T "" "NAME" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE ${T_LIBS} magi_test_common GTest::gtest GTest::gtest_main magi_warnings)
  gtest_discover_tests(${T_NAME} PROPERTIES LABELS "${T_LABELS}" DISCOVERY_TIMEOUT 60)
endfunction()
