# Install-time half of dist/CMakeLists.txt: the systemd units and their
# helper, with the absolute paths of the prefix being installed to.
foreach(dir BINDIR LIBEXECDIR UNITDIR)
  if(IS_ABSOLUTE "${NBDCRYPT_${dir}}")
    set(full_${dir} "${NBDCRYPT_${dir}}")
  else()
    set(full_${dir} "${CMAKE_INSTALL_PREFIX}/${NBDCRYPT_${dir}}")
  endif()
endforeach()
set(NBDCRYPT_BIN "${full_BINDIR}/nbdcrypt")
set(NBDCRYPT_HELPER "${full_LIBEXECDIR}/nbdcrypt/nbdcrypt-service")

foreach(name nbdcrypt@.service nbdcrypt-dir@.service)
  configure_file("${NBDCRYPT_UNIT_SRCDIR}/${name}.in" "${NBDCRYPT_UNIT_GENDIR}/${name}" @ONLY)
  file(INSTALL DESTINATION "${full_UNITDIR}" TYPE FILE FILES "${NBDCRYPT_UNIT_GENDIR}/${name}")
endforeach()
configure_file("${NBDCRYPT_UNIT_SRCDIR}/nbdcrypt-service.in"
               "${NBDCRYPT_UNIT_GENDIR}/nbdcrypt-service" @ONLY)
file(INSTALL DESTINATION "${full_LIBEXECDIR}/nbdcrypt" TYPE PROGRAM
     FILES "${NBDCRYPT_UNIT_GENDIR}/nbdcrypt-service")
