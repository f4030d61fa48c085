# Installs libkiln.so, the public headers, a CMake package (find_package(kiln
# CONFIG) -> kiln::kiln) and kiln.pc, all relocatable: `cmake --install build
# --prefix <anywhere>` works. Component `kiln`, so that the Python wheel
# (component `python`) does not carry them.
include(CMakePackageConfigHelpers)

set(KILN_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/kiln)
install(TARGETS kiln_shared EXPORT kiln-targets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT kiln)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/kiln DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT kiln
        FILES_MATCHING PATTERN "*.h")
install(EXPORT kiln-targets NAMESPACE kiln:: DESTINATION ${KILN_CMAKE_DIR} COMPONENT kiln)
configure_package_config_file(cmake/kiln-config.cmake.in ${PROJECT_BINARY_DIR}/kiln-config.cmake
                              INSTALL_DESTINATION ${KILN_CMAKE_DIR})
# 0.x: only the same minor version is compatible (the SOVERSION is major.minor).
write_basic_package_version_file(${PROJECT_BINARY_DIR}/kiln-config-version.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/kiln-config.cmake ${PROJECT_BINARY_DIR}/kiln-config-version.cmake
        DESTINATION ${KILN_CMAKE_DIR} COMPONENT kiln)

# pkg-config: the prefix is found from the .pc file's own folder (${pcfiledir}).
file(RELATIVE_PATH KILN_PC_TO_PREFIX /prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig /prefix)
string(REGEX REPLACE "/$" "" KILN_PC_TO_PREFIX ${KILN_PC_TO_PREFIX})
list(TRANSFORM CUDAToolkit_INCLUDE_DIRS PREPEND -I OUTPUT_VARIABLE KILN_PC_CUDA_CFLAGS)
list(JOIN KILN_PC_CUDA_CFLAGS " " KILN_PC_CUDA_CFLAGS)
configure_file(cmake/kiln.pc.in ${PROJECT_BINARY_DIR}/kiln.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/kiln.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT kiln)
