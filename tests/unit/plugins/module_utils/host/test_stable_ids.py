# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The /dev/disk/by-id names udev would make, made again from sysfs on a host
without udev, so that an inventory written on a host with udev finds its disks.

Each test lays out a sysfs tree the way the kernel shows an NVMe namespace, a SATA
disk behind libata and a SAS disk (the attribute files udev's rules read), runs the
real collect() and build() on it, and looks the disk up by the name udev gives it.
The lab's loop disks have no model, serial or WWID, so only these trees show it.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


import os

import pytest

from ansible_collections.localpv.rollout.plugins.module_utils.host import devices


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    mode = "wb" if isinstance(text, bytes) else "w"
    with open(path, mode) as handle:
        handle.write(text)


def ata_words(text, length):
    """A string as ATA IDENTIFY data holds it: padded, bytes swapped in each word."""
    raw = text.ljust(length).encode("ascii")
    return b"".join(raw[i + 1:i + 2] + raw[i:i + 1] for i in range(0, length, 2))


def vpd_pg89(model, serial):
    """The ATA Information VPD page (SAT): a header, then IDENTIFY data at byte 60."""
    identify = bytearray(512)
    identify[20:40] = ata_words(serial, 20)     # words 10-19
    identify[54:94] = ata_words(model, 40)      # words 27-46
    header = bytearray(60)
    header[1] = 0x89
    header[2:4] = (len(header) - 4 + len(identify)).to_bytes(2, "big")
    header[8:16] = b"linux   "
    return bytes(header + identify)


def host(tmp_path, name, sysfs):
    """A host whose only disk is ``name`` with the given sysfs files; no udev."""
    base = tmp_path / "sys" / "block" / name
    write(str(base / "dev"), "259:0\n" if name.startswith("nvme") else "8:0\n")
    write(str(base / "size"), "1953525168\n")
    write(str(base / "ro"), "0\n")
    write(str(base / "removable"), "0\n")
    write(str(base / "queue" / "rotational"), "0\n")
    for rel, value in sysfs.items():
        write(str(base / rel), value)
    write(str(tmp_path / "proc" / "self" / "mountinfo"), "")
    write(str(tmp_path / "proc" / "swaps"), "Filename Type Size Used Priority\n")
    os.makedirs(str(tmp_path / "dev"), exist_ok=True)
    raw = devices.collect(sys_root=str(tmp_path / "sys"), dev_root=str(tmp_path / "dev"),
                          proc_root=str(tmp_path / "proc"), probe=False)
    assert raw["by_id"] is None  # no /dev/disk/by-id: udev does not run
    return devices.build(raw, dev_root=str(tmp_path / "dev"))


NVME = {  # the namespace's device link is the controller, which has model and serial
    "wwid": "eui.0025385b71b0a1c2\n", "nsid": "1\n",
    "device/model": "Samsung SSD 980 PRO 1TB                 \n",
    "device/serial": "S5GXNF0R123456A     \n",
}

SATA = {  # libata: SCSI vendor "ATA", the SCSI model cut to 16 characters
    "device/vendor": "ATA     \n", "device/model": "Samsung SSD 860 \n",
    "device/wwid": "naa.5002538e40a1b2c3\n",
    "device/vpd_pg89": vpd_pg89("Samsung SSD 860 EVO 500GB", "S3Z1NB0K123456A"),
}

SAS = {
    "device/vendor": "SEAGATE \n", "device/model": "ST4000NM0025    \n",
    "device/wwid": "naa.5000c500a1b2c3d4\n",
}


@pytest.mark.parametrize("sysfs, name, link", [
    (NVME, "nvme0n1", "nvme-eui.0025385b71b0a1c2"),
    (NVME, "nvme0n1", "nvme-Samsung_SSD_980_PRO_1TB_S5GXNF0R123456A"),
    (NVME, "nvme0n1", "nvme-Samsung_SSD_980_PRO_1TB_S5GXNF0R123456A_1"),
    (SATA, "sda", "ata-Samsung_SSD_860_EVO_500GB_S3Z1NB0K123456A"),
    (SATA, "sda", "wwn-0x5002538e40a1b2c3"),
    (SAS, "sda", "scsi-35000c500a1b2c3d4"),
    (SAS, "sda", "wwn-0x5000c500a1b2c3d4"),
], ids=["nvme-eui", "nvme-model-serial", "nvme-model-serial-nsid", "ata-model-serial", "ata-wwn",
        "scsi-naa", "sas-wwn"])
def test_an_inventory_written_with_udev_finds_the_disk_without_it(tmp_path, sysfs, name, link):
    disks = host(tmp_path, name, sysfs)
    found = devices.find_disk(disks, "/dev/disk/by-id/" + link)
    assert found is not None and found["name"] == name
    assert devices.find_disk(disks, link) is found
    assert link in found["by_id_synthesized"]


def test_the_stable_id_recorded_on_pvs_and_in_fstab_does_not_change(tmp_path):
    # the synthesized names only find a disk; what is recorded stays the most stable id
    assert host(tmp_path, "nvme0n1", NVME)[0]["stable_id"] == "nvme-eui.0025385b71b0a1c2"


def test_no_ata_name_without_the_identify_page(tmp_path):
    # sysfs's own model of an ATA disk is cut to 16 characters: a name made from it
    # would be wrong for most disks, so none is made
    sysfs = dict(SATA)
    del sysfs["device/vpd_pg89"]
    sysfs["device/serial"] = "S3Z1NB0K123456A\n"
    (found,) = host(tmp_path, "sda", sysfs)
    assert not [n for n in found["by_id_synthesized"] if n.startswith("ata-")]
    assert devices.find_disk([found], "/dev/disk/by-id/ata-Samsung_SSD_860_EVO_500GB_S3Z1NB0K123456A") is None


def test_another_disk_is_not_found_by_a_name_made_for_this_one(tmp_path):
    disks = host(tmp_path, "nvme0n1", NVME)
    assert devices.find_disk(disks, "/dev/disk/by-id/nvme-Samsung_SSD_980_PRO_1TB_S5GXNF0R999999Z") is None
    assert devices.find_disk(disks, "/dev/disk/by-id/nvme-eui.0025385b71b0a1c3") is None


def test_names_are_spelled_with_udevs_characters():
    assert devices.udev_string("  WDC  WD40EFRX-68N32N0 ") == "WDC_WD40EFRX-68N32N0"
    assert devices.udev_string("Model/With*Odd") == "Model_With_Odd"


def test_the_identify_page_gives_model_and_serial():
    assert devices.ata_identity(vpd_pg89("WDC WD40EFRX-68N32N0", "WD-WCC7K1234567").hex()) == (
        "WDC WD40EFRX-68N32N0", "WD-WCC7K1234567")
    assert devices.ata_identity(None) == (None, None)
    assert devices.ata_identity("0089") == (None, None)


def test_with_udev_only_its_own_links_count(tmp_path):
    raw = {"devices": {"sda": dict(devices._read_block_attrs(str(tmp_path), "none"), name="sda", dev="8:0",
                                   size=512, vendor="ATA", model="Samsung SSD 860",
                                   vpd_pg89=vpd_pg89("Samsung SSD 860 EVO 500GB", "S3Z1NB0K123456A").hex())},
           "by_id": {"wwn-0x5002538e40a1b2c3": "sda"}, "mountinfo": "", "swaps": []}
    (found,) = devices.build(raw)
    assert found["udev"] and found["by_id_synthesized"] == []
