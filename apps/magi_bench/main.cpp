// magi-bench entry point: MPI init, the command line, one catch that turns an error into a
// message and an exit code (MPI_Abort when other ranks could be left waiting).
#include <mpi.h>

#include <cstdio>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  std::puts("magi-bench: under construction");
  MPI_Finalize();
  return 0;
}
